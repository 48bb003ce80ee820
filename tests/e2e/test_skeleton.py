"""The walking skeleton end to end: ffmpeg -> ingest -> router -> output -> nginx-rtmp recordings."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.peers import ffmpeg, judge
from tests.peers.nginx_rtmp import NginxRtmp
from tests.peers.procs import wait_until
from tests.peers.stack import Stack

pytestmark = pytest.mark.e2e

GOP_S = 2.0


def publish_through(
    stack: Stack,
    dest: NginxRtmp,
    ev: dict,
    inp: dict,
    stream: str,
    tmp_path: Path,
    seconds: float = 4,
    url: str | None = None,
) -> Path:
    """Publish ``seconds`` of test pattern to the input, stop the event, and judge what the destination recorded."""
    pub = ffmpeg.publish(url or inp["publish_url"], duration=seconds, log_path=tmp_path / f"pub-{stream}.log")
    try:
        ffmpeg.wait_exit(pub, 30 + seconds)
    finally:
        ffmpeg.stop(pub)
    stack.ok("POST", f"/v1/events/{ev['id']}/stop")
    rec = dest.wait_recording_closed(stream, 20)
    judge.assert_valid_recording(rec, min_duration=seconds - 1.0)
    return rec


def test_one_feed_to_three_destinations_rtmp_and_rtmps(
    stack: Stack, destination: Callable[..., NginxRtmp], tmp_path: Path
) -> None:
    dest = destination(tls=True)
    ev = stack.create_event("launch")
    inp = stack.add_input(ev["id"])
    outs = [
        stack.add_output(ev["id"], dest.url("live", "yt"), "youtube", "B"),
        stack.add_output(ev["id"], dest.url("live", "tw"), "twitch", "B"),
        stack.add_output(
            ev["id"], dest.rtmps_url("live", "fb").replace("127.0.0.1", "localhost"), "facebook", "B"
        ),
    ]
    stack.ok("POST", f"/v1/events/{ev['id']}/start")
    for out in outs:
        stack.wait_output_state(ev["id"], out["id"], "live")
    pub = ffmpeg.publish(inp["publish_url"], duration=20, log_path=tmp_path / "pub.log")
    try:
        status = stack.wait_input_tracks(ev["id"], inp["id"])
        assert status["video_codec"] == "h264" and status["audio_codec"] == "aac"
        ffmpeg.wait_exit(pub, 60)
    finally:
        ffmpeg.stop(pub)
    # the input's health was live while publishing; the outputs counted bytes
    for out in outs:
        seen = stack.output_of(ev["id"], out["id"])
        assert seen["bytes_sent"] > 1_000_000, seen
    stack.ok("POST", f"/v1/events/{ev['id']}/stop")
    for stream in ("yt", "tw", "fb"):
        rec = dest.wait_recording_closed(stream, 20)
        judge.assert_valid_recording(rec, min_duration=19.5, max_duration=20.5)
        info = judge.probe_packets(rec)
        assert (info["video"].width, info["video"].height) == (1280, 720)


def test_two_publishers_reach_only_their_own_destinations_and_a_wrong_key_is_refused(
    stack: Stack, destination: Callable[..., NginxRtmp], tmp_path: Path
) -> None:
    dest = destination()
    events = []
    for name, size in (("a", "640x360"), ("b", "320x240")):
        ev = stack.create_event(name)
        inp = stack.add_input(ev["id"])
        stack.add_output(ev["id"], dest.url("live", f"ev-{name}"), f"dest-{name}")
        stack.ok("POST", f"/v1/events/{ev['id']}/start")
        events.append((ev, inp, size))
    pubs = [
        ffmpeg.publish(inp["publish_url"], duration=8, size=size, log_path=tmp_path / f"pub-{ev['name']}.log")
        for ev, inp, size in events
    ]
    try:
        for ev, inp, _ in events:
            stack.wait_input_connected(ev["id"], inp["id"])
        # a wrong key while both are live: refused, closed, logged without the key
        wrong_key = "wrong-" + "k" * 20
        bad_url = events[0][1]["publish_url"].rsplit("/", 1)[0] + "/" + wrong_key
        bad = ffmpeg.publish(bad_url, duration=5, log_path=tmp_path / "bad.log")
        code = ffmpeg.wait_exit(bad, 30, check=False)
        assert code != 0, "a publish with a wrong stream key must fail"
        wait_until(lambda: "ingest.publish_refused" in stack.log_text(), 10, "the refusal to be logged")
        assert wrong_key not in stack.log_text()
        for pub in pubs:
            ffmpeg.wait_exit(pub, 40)
    finally:
        for pub in pubs:
            ffmpeg.stop(pub)
    for ev, _, _size in events:
        stack.ok("POST", f"/v1/events/{ev['id']}/stop")
    for ev, _, size in events:
        rec = dest.wait_recording_closed(f"ev-{ev['name']}", 20)
        judge.assert_valid_recording(rec, min_duration=7.0)
        video = judge.probe_packets(rec)["video"]
        assert f"{video.width}x{video.height}" == size, f"{ev['name']} got another event's picture"
    # one recording per event stream, nothing else at the destination
    assert sorted(p.name.rsplit("-", 1)[0] for p in dest.recordings()) == ["ev-a", "ev-b"]


def test_output_added_live_starts_within_a_gop_and_stopping_it_ends_the_stream(
    stack: Stack, destination: Callable[..., NginxRtmp], tmp_path: Path
) -> None:
    dest = destination()
    ev = stack.create_event("late joiner")
    inp = stack.add_input(ev["id"])
    stack.ok("POST", f"/v1/events/{ev['id']}/start")
    pub = ffmpeg.publish(inp["publish_url"], duration=30, gop=int(GOP_S * 30), log_path=tmp_path / "pub.log")
    try:
        stack.wait_input_connected(ev["id"], inp["id"])
        time.sleep(3)  # ok-sleep: let the program run past a few GOPs before the late output joins
        out = stack.add_output(ev["id"], dest.url("live", "late"), "late")
        added = time.monotonic()
        dest.wait_publishing("late", 15, min_bytes=100_000)
        time.sleep(5)  # ok-sleep: record a few seconds of the late output
        stack.ok("POST", f"/v1/outputs/{out['id']}/stop")
        stopped = time.monotonic()
        rec = dest.wait_recording_closed("late", 15)
        assert pub.poll() is None, "the publisher must still be live: only the output was stopped"
        stack.wait_output_state(ev["id"], out["id"], "stopped")
        assert "dropping" not in dest.log_text()
    finally:
        ffmpeg.stop(pub)
    info = judge.probe_packets(rec)
    judge.assert_valid_recording(rec)
    video = info["video"]
    assert video.keyframe_count >= 1
    assert video.first_is_keyframe, "the late output must start at a keyframe"
    elapsed = stopped - added
    # started from the GOP cache: at most one GOP older than the moment it was added
    assert elapsed - 1.0 <= judge.duration(rec) <= elapsed + GOP_S + 0.5


def test_output_service_killed_is_restarted_and_destinations_resume(
    stack: Stack, destination: Callable[..., NginxRtmp], tmp_path: Path
) -> None:
    dest = destination()
    ev = stack.create_event("crash")
    inp = stack.add_input(ev["id"])
    streams = ["k1", "k2", "k3"]
    for s in streams:
        stack.add_output(ev["id"], dest.url("live", s), s)
    stack.ok("POST", f"/v1/events/{ev['id']}/start")
    pub = ffmpeg.publish(inp["publish_url"], duration=40, log_path=tmp_path / "pub.log")
    try:
        for s in streams:
            dest.wait_publishing(s, 20, min_bytes=50_000)
        before = {s: len(dest.recordings(s)) for s in streams}
        old_pid = stack.kill_service("output")
        killed = time.monotonic()

        def all_resumed() -> bool:
            new_pid = stack.child_pid("output")
            if new_pid is None or new_pid == old_pid:
                return False
            return all(len(dest.recordings(s)) > before[s] and dest.is_publishing(s) for s in streams)

        wait_until(all_resumed, 10, "every destination to receive again after the output service was killed")
        resumed_after = time.monotonic() - killed
        for s in streams:
            stat = dest.wait_publishing(s, 5, min_bytes=50_000)
            assert stat["publishing"]
    finally:
        ffmpeg.stop(pub)
    assert resumed_after <= 10.0
    assert "launcher.child_exited" in stack.log_text()


def test_garbage_connections_never_crash_ingest(
    stack: Stack, destination: Callable[..., NginxRtmp], tmp_path: Path
) -> None:
    ingest_pid = stack.child_pid("ingest")
    garbage = [
        b"",  # connect and close
        b"\x03" + b"\x00" * 100,  # truncated handshake
        b"\x07" + b"\xff" * 3073,  # wrong RTMP version
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x03" + b"\x00" * 1536 + b"\x00" * 1536 + b"\xff" * 5000,  # handshake then chunk garbage
    ]
    for payload in garbage:
        with socket.create_connection(("127.0.0.1", stack.rtmp_port), timeout=5) as sock:
            sock.sendall(payload)
            sock.settimeout(15)
            try:
                while sock.recv(65536):
                    pass  # read until the server closes the connection
            except (TimeoutError, ConnectionResetError):
                pass
    assert stack.child_pid("ingest") == ingest_pid, "ingest restarted: a malformed connection crashed it"
    # and it still serves a real publisher end to end
    dest = destination()
    ev = stack.create_event("after garbage")
    inp = stack.add_input(ev["id"])
    stack.add_output(ev["id"], dest.url("live", "ok"), "ok")
    stack.ok("POST", f"/v1/events/{ev['id']}/start")
    publish_through(stack, dest, ev, inp, "ok", tmp_path)
    assert "ingest.protocol_error" in stack.log_text()


def test_restarted_stack_resumes_live_outputs_from_desired_state(
    stack: Stack, destination: Callable[..., NginxRtmp], tmp_path: Path
) -> None:
    dest = destination()
    ev = stack.create_event("survives restart")
    inp = stack.add_input(ev["id"])
    out = stack.add_output(ev["id"], dest.url("live", "persist"), "persist")
    stack.ok("POST", f"/v1/events/{ev['id']}/start")
    stack.wait_output_state(ev["id"], out["id"], "live")
    assert stack.restart() == 0, "the launcher must exit 0 on SIGTERM"
    # same desired state after the restart, and the output is live again with no API call
    again = stack.event(ev["id"])
    assert again["state"] == "live"
    assert [i["id"] for i in again["inputs"]] == [inp["id"]]
    assert [o["id"] for o in again["outputs"]] == [out["id"]]
    stack.wait_output_state(ev["id"], out["id"], "live", timeout=30)
    publish_through(stack, dest, ev, inp, "persist", tmp_path)


def test_rtmps_ingest_with_a_configured_certificate(
    destination: Callable[..., NginxRtmp], tmp_path: Path
) -> None:
    from tests.peers.ports import free_port
    from tests.peers.stack import start_stack
    from tests.peers.tls import session_cert

    cert = session_cert()
    rtmps_port = free_port()
    s = start_stack(
        tmp_path / "tls-stack",
        {
            "FANOUT_TLS_CERT": str(cert.cert_file),
            "FANOUT_TLS_KEY": str(cert.key_file),
            "FANOUT_RTMPS_PORT": str(rtmps_port),
        },
    )
    try:
        dest = destination()
        ev = s.create_event("rtmps in")
        inp = s.add_input(ev["id"])
        s.add_output(ev["id"], dest.url("live", "tls-in"), "tls-in")
        s.ok("POST", f"/v1/events/{ev['id']}/start")
        url = f"rtmps://127.0.0.1:{rtmps_port}/live/{inp['stream_key']}"
        publish_through(s, dest, ev, inp, "tls-in", tmp_path, url=url)
    finally:
        assert s.stop() == 0
