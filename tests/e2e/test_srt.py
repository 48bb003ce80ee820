"""SRT end to end: ffmpeg and srt-live-transmit publishing into ingest, SRT caller and listener outputs,
SRT and RTMP as primary and backup, refusals at the handshake, and loss on the contribution path."""

from __future__ import annotations

import itertools
import os
import random
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.peers import ffmpeg, judge
from tests.peers.ffmpeg import FfmpegProcess
from tests.peers.nginx_rtmp import NginxRtmp
from tests.peers.ports import free_port, udp_bound
from tests.peers.procs import stop, wait_until
from tests.peers.stack import Stack, start_stack

pytestmark = pytest.mark.e2e

PASSPHRASE = "e2e-passphrase-0042"


def caller_url(inp: dict[str, Any], passphrase: str | None = None, **extra: Any) -> str:
    """The input's publish_url with the real passphrase instead of its hint, for ffmpeg."""
    url = inp["publish_url"].split("&passphrase=", 1)[0]
    if passphrase is not None:
        url += f"&passphrase={passphrase}&pbkeylen=16"
    for key, value in {"mode": "caller", "pkt_size": 1316, **extra}.items():
        url += f"&{key}={value}"
    return url


def wait_srt_listening(stack: Stack) -> None:
    wait_until(lambda: udp_bound(stack.srt_port), 20, "SRT ingest to listen")


def input_view(stack: Stack, event_id: str) -> dict[str, Any]:
    return dict(stack.event(event_id)["inputs"][0])


def srt_live_transmit(source_port: int, target: str, log_path: Path) -> subprocess.Popen[bytes]:
    """srt-live-transmit relaying MPEG-TS from a local UDP port to an SRT URL, without reconnecting."""
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            ["srt-live-transmit", "-a", "no", "-c", "1316", f"udp://127.0.0.1:{source_port}", target],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def refused_publish(url: str, log_path: Path) -> int:
    proc = ffmpeg.publish(url, duration=3, size="160x120", bitrate="200k", log_path=log_path)
    return ffmpeg.wait_exit(proc, 30, check=False)


def test_ffmpeg_and_srt_live_transmit_share_the_port_and_bad_callers_are_refused_at_the_handshake(
    stack: Stack, destination: Callable[..., NginxRtmp], tmp_path: Path
) -> None:
    dest = destination()
    ev_a, ev_b = stack.create_event("srt a"), stack.create_event("srt b")
    inp_a = stack.add_input(ev_a["id"], protocol="srt", passphrase=PASSPHRASE, pbkeylen=16)
    inp_b = stack.add_input(ev_b["id"], protocol="srt")
    stack.add_output(ev_a["id"], dest.url("live", "srt-a"), "a")
    stack.add_output(ev_b["id"], dest.url("live", "srt-b"), "b")
    for ev in (ev_a, ev_b):
        stack.ok("POST", f"/v1/events/{ev['id']}/start")
    wait_srt_listening(stack)
    # A: ffmpeg, access-control stream id, encrypted. B: srt-live-transmit, the plain key form.
    pub_a = ffmpeg.publish(
        caller_url(inp_a, PASSPHRASE), duration=8, size="640x360", bitrate="1M", log_path=tmp_path / "a.log"
    )
    udp_port = free_port(socket.SOCK_DGRAM)
    plain = f"srt://127.0.0.1:{stack.srt_port}?streamid={inp_b['stream_key']}"
    relay = srt_live_transmit(udp_port, plain, tmp_path / "slt.log")
    pub_b = ffmpeg.publish(
        f"udp://127.0.0.1:{udp_port}?pkt_size=1316", duration=8, size="320x240", bitrate="500k",
        log_path=tmp_path / "b.log",
    )  # fmt: skip
    try:
        for ev, inp in ((ev_a, inp_a), (ev_b, inp_b)):
            stack.wait_input_connected(ev["id"], inp["id"])
            wait_until(lambda ev=ev: input_view(stack, ev["id"])["audio_codec"] == "aac", 10, "both tracks")
        seen_a, seen_b = input_view(stack, ev_a["id"]), input_view(stack, ev_b["id"])
        for seen in (seen_a, seen_b):
            assert (seen["protocol"], seen["video_codec"], seen["audio_codec"]) == ("srt", "h264", "aac")
        assert (seen_a["encrypted"], seen_a["pbkeylen"], seen_b["encrypted"]) == (True, 16, False)
        # statistics each second: the transport view fills in
        wait_until(lambda: (input_view(stack, ev_a["id"]).get("srt") or {}).get("recv_rate_bps", 0) > 0, 10,
                   "SRT statistics on the input")  # fmt: skip
        stats = input_view(stack, ev_a["id"])["srt"]
        assert stats["latency_ms"] == 120 and stats["pkt_drop"] == 0
        # while both are live: refused during the handshake, each for its reason
        unknown_key = "unknown-stream-key-777"
        wrong_pass = "not-the-right-passphrase"
        assert refused_publish(caller_url({"publish_url": plain.replace(inp_b["stream_key"], unknown_key)}),
                               tmp_path / "unknown.log") != 0  # fmt: skip
        assert refused_publish(caller_url(inp_a, wrong_pass), tmp_path / "wrong.log") != 0
        request = caller_url(inp_b).replace(",m=publish", ",m=request")  # a player, not a publisher
        assert refused_publish(request, tmp_path / "request.log") != 0
        for reason in ("unknown or stopped stream id", "wrong passphrase", "only takes publishers"):
            wait_until(lambda r=reason: r in stack.log_text(), 10, f"the refusal '{reason}' to be logged")
        ffmpeg.wait_published(pub_a, 40)
        ffmpeg.wait_published(pub_b, 40)
    finally:
        ffmpeg.stop(pub_a)
        ffmpeg.stop(pub_b)
        stop(relay)
    text = stack.log_text()
    for secret in (PASSPHRASE, wrong_pass, unknown_key, inp_a["stream_key"], inp_b["stream_key"]):
        assert secret not in text, "a secret reached the logs"
    assert text.count("ingest.srt_accepted") == 2, "only the two good callers were accepted"
    for ev in (ev_a, ev_b):
        stack.ok("POST", f"/v1/events/{ev['id']}/stop")
    for stream, size in (("srt-a", (640, 360)), ("srt-b", (320, 240))):
        rec = dest.wait_recording_closed(stream, 20)
        info = judge.assert_valid_recording(rec, min_duration=6.5)
        assert (info["video"].width, info["video"].height) == size, f"{stream} got another event's picture"
    assert sorted(p.name.rsplit("-", 1)[0] for p in dest.recordings()) == ["srt-a", "srt-b"]


def test_an_input_passphrase_rotated_in_the_vault_takes_effect_at_ingest_without_a_restart(
    stack: Stack, tmp_path: Path
) -> None:
    ev = stack.create_event("rotation")
    inp = stack.add_input(ev["id"], protocol="srt", passphrase=PASSPHRASE, pbkeylen=16)
    stack.ok("POST", f"/v1/events/{ev['id']}/start")
    wait_srt_listening(stack)
    wait_until(lambda: stack.log_text().count("ingest.passphrase_resolved") == 1, 15, "ingest to resolve")
    ingest_pid = stack.child_pid("ingest")
    new_phrase = "rotated-e2e-passphrase-77"
    stack.ok("POST", f"/v1/credentials/{inp['credential_id']}/rotate", {"value": new_phrase})
    wait_until(lambda: stack.log_text().count("ingest.passphrase_resolved") == 2, 15, "the new version")
    old = refused_publish(caller_url(inp, PASSPHRASE), tmp_path / "old.log")
    assert old != 0, "the rotated-out passphrase still got in"
    wait_until(lambda: "wrong passphrase" in stack.log_text(), 10, "the refusal to be logged")
    pub = ffmpeg.publish(
        caller_url(inp, new_phrase), duration=4, size="320x240", bitrate="300k", log_path=tmp_path / "new.log"
    )
    try:
        stack.wait_input_connected(ev["id"], inp["id"])
        ffmpeg.wait_published(pub, 30)
    finally:
        ffmpeg.stop(pub)
    assert stack.child_pid("ingest") == ingest_pid, "ingest restarted"
    text = stack.log_text()
    for secret in (PASSPHRASE, new_phrase):
        assert secret not in text, "a passphrase reached the logs"


def test_rtmp_input_delivered_to_an_srt_caller_and_pulled_from_an_srt_listener(
    stack: Stack, tmp_path: Path
) -> None:
    ev = stack.create_event("rtmp to srt")
    inp = stack.add_input(ev["id"])
    push_port, pull_port = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_DGRAM)
    pushed, pulled = tmp_path / "pushed.ts", tmp_path / "pulled.ts"
    partner = ffmpeg.record(
        f"srt://127.0.0.1:{push_port}?mode=listener&passphrase={PASSPHRASE}", pushed, listen=True,
        log_path=tmp_path / "partner.log",
    )  # fmt: skip
    puller: FfmpegProcess | None = None
    pub: FfmpegProcess | None = None
    try:
        wait_until(lambda: udp_bound(push_port), 10, "the partner's SRT listener")
        push = stack.add_output(
            ev["id"],
            f"srt://127.0.0.1:{push_port}?mode=caller&passphrase={PASSPHRASE}&latency=200",
            "push",
            "C",
        )
        pull = stack.add_output(ev["id"], f"srt://127.0.0.1:{pull_port}?mode=listener", "pull", "C")
        assert PASSPHRASE not in str(push)
        stack.ok("POST", f"/v1/events/{ev['id']}/start")
        stack.wait_output_state(ev["id"], push["id"], "live")
        wait_until(lambda: udp_bound(pull_port), 20, "the SRT listener output")
        puller = ffmpeg.record(
            f"srt://127.0.0.1:{pull_port}?mode=caller", pulled, log_path=tmp_path / "pull.log"
        )
        stack.wait_output_state(ev["id"], pull["id"], "live")
        pub = ffmpeg.publish(inp["publish_url"], duration=8, size="640x360", bitrate="1M",
                             log_path=tmp_path / "pub.log")  # fmt: skip
        ffmpeg.wait_published(pub, 40)
        for out in (push, pull):
            seen = stack.output_of(ev["id"], out["id"])
            assert seen["state"] == "live" and seen["bytes_sent"] > 500_000, seen
        stack.ok("POST", f"/v1/events/{ev['id']}/stop")
        # the partners see the connection end and close their files
        ffmpeg.wait_exit(partner, 20, check=False)
        ffmpeg.wait_exit(puller, 20, check=False)
    finally:
        for proc in (pub, partner, puller):
            if proc is not None:
                ffmpeg.stop(proc)
    for path in (pushed, pulled):
        info = judge.assert_valid_recording(path, min_duration=6.5)
        assert (info["video"].width, info["video"].height) == (640, 360)
    assert PASSPHRASE not in stack.log_text()


def test_srt_primary_and_rtmp_backup_both_feed_one_program(
    stack: Stack, destination: Callable[..., NginxRtmp], tmp_path: Path
) -> None:
    dest = destination()
    ev = stack.ok("POST", "/v1/events", {"name": "srt+rtmp", "failover": {"stable_window_s": 3}})
    primary = stack.add_input(ev["id"], "primary", protocol="srt")
    backup = stack.add_input(ev["id"], "backup")
    stack.add_output(ev["id"], dest.url("live", "mixed"), "mixed")
    stack.ok("POST", f"/v1/events/{ev['id']}/start")
    wait_srt_listening(stack)

    def on_air() -> str | None:
        return stack.event(ev["id"])["program"]["live_input"]

    back = ffmpeg.publish(backup["publish_url"], duration=30, size="320x240", bitrate="400k", pattern="smptehdbars",
                          tone_hz=440, log_path=tmp_path / "backup.log")  # fmt: skip
    prim: FfmpegProcess | None = None
    try:
        wait_until(lambda: on_air() == backup["id"], 20, "the RTMP backup to be on air")
        prim = ffmpeg.publish(caller_url(primary), duration=30, size="320x240", bitrate="400k",
                              log_path=tmp_path / "primary.log")  # fmt: skip
        wait_until(lambda: on_air() == primary["id"], 25, "the SRT primary to take the program")
        dest.wait_publishing("mixed", 10, min_bytes=100_000)
        ffmpeg.stop(prim)  # the SRT primary goes away: the RTMP backup carries the program again
        wait_until(lambda: on_air() == backup["id"], 15, "the RTMP backup to take over again")
    finally:
        if prim is not None:
            ffmpeg.stop(prim)
        ffmpeg.stop(back)
    stack.ok("POST", f"/v1/events/{ev['id']}/stop")
    judge.assert_valid_recording(dest.wait_recording_closed("mixed", 20), min_duration=5.0)


# --- loss on the contribution path: nftables in a network namespace the test creates ---


@dataclass
class Namespace:
    name: str
    host_ip: str
    peer_ip: str

    def run(self, *args: str) -> None:
        subprocess.run(["ip", "netns", "exec", self.name, *args], check=True, capture_output=True, timeout=20)

    def drop_udp_to(self, port: int, per_mille: int) -> None:
        self.run("nft", "flush", "chain", "inet", "t", "c")
        self.run("nft", "add", "rule", "inet", "t", "c", "udp", "dport", str(port),
                 "numgen", "random", "mod", "1000", "<", str(per_mille), "drop")  # fmt: skip


@pytest.fixture
def netns() -> Iterator[Namespace]:
    if os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("nft"):
        pytest.skip("network namespaces need root, iproute2 and nftables")
    n = random.randrange(1, 250)
    name, host_if, peer_if = f"fxsrt{os.getpid() % 10000}", f"fxh{n}", f"fxp{n}"
    ns = Namespace(name, f"10.201.{n}.1", f"10.201.{n}.2")
    setup = [
        ["ip", "netns", "add", name],
        ["ip", "link", "add", host_if, "type", "veth", "peer", "name", peer_if],
        ["ip", "link", "set", peer_if, "netns", name],
        ["ip", "addr", "add", f"{ns.host_ip}/30", "dev", host_if],
        ["ip", "link", "set", host_if, "up"],
        ["ip", "netns", "exec", name, "ip", "addr", "add", f"{ns.peer_ip}/30", "dev", peer_if],
        ["ip", "netns", "exec", name, "ip", "link", "set", peer_if, "up"],
        ["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"],
        ["ip", "netns", "exec", name, "nft", "add", "table", "inet", "t"],
        ["ip", "netns", "exec", name, "nft", "add", "chain", "inet", "t", "c",
         "{ type filter hook output priority 0; }"],
    ]  # fmt: skip
    try:
        for cmd in setup[:1]:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
            if done.returncode != 0:
                pytest.skip(f"cannot create a network namespace: {done.stderr.strip()}")
        for cmd in setup[1:]:
            subprocess.run(cmd, check=True, capture_output=True, timeout=20)
        yield ns
    finally:
        subprocess.run(["ip", "link", "del", host_if], capture_output=True, timeout=20)
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=20)


def publish_from(ns: Namespace, url: str, seconds: float, log_path: Path) -> FfmpegProcess:
    args = ffmpeg.publish_args(url, duration=seconds, size="640x360", bitrate="2M", gop=60)
    return FfmpegProcess(["ip", "netns", "exec", ns.name, *args], log_path)


def watch_input(stack: Stack, event_id: str, pub: FfmpegProcess) -> list[dict[str, Any]]:
    """The input's view every 0.5 s while the publisher runs."""
    views: list[dict[str, Any]] = []
    deadline = time.monotonic() + 60
    while pub.poll() is None and time.monotonic() < deadline:
        views.append(input_view(stack, event_id))
        time.sleep(0.5)  # ok-sleep: sampling the live statistics while the publisher runs
    return views


def test_srt_recovers_2_percent_loss_and_survives_10_percent(
    netns: Namespace, destination: Callable[..., NginxRtmp], tmp_path: Path
) -> None:
    s = start_stack(tmp_path / "stack", {"FANOUT_BIND_HOST": "0.0.0.0"})  # reachable from the namespace
    try:
        dest = destination()
        wait_srt_listening(s)
        netns.drop_udp_to(s.srt_port, 20)  # 2 % of the packets towards ingest
        ev = s.create_event("2% loss")
        inp = s.add_input(ev["id"], protocol="srt", latency_ms=400)
        s.add_output(ev["id"], dest.url("live", "loss2"), "loss2")
        s.ok("POST", f"/v1/events/{ev['id']}/start")
        # linger: the publisher waits for its last packets to be acknowledged before it closes, so even
        # a loss in its final milliseconds is retransmitted
        url = caller_url(inp, linger=3).replace("127.0.0.1", netns.host_ip)
        pub = publish_from(netns, url, 10, tmp_path / "pub2.log")
        try:
            views = watch_input(s, ev["id"], pub)
            assert ffmpeg.wait_published(pub, 30) == 0
        finally:
            ffmpeg.stop(pub)
        live = [v["srt"] for v in views if v.get("srt")]
        assert live, "no SRT statistics while publishing"
        assert max(v["pkt_loss"] for v in live) > 0, "nftables dropped nothing?"
        assert max(v["pkt_retrans"] for v in live) > 0, "the losses must have been retransmitted"
        assert any(v["degraded"] and "packet loss" in " ".join(v["degraded_reasons"]) for v in views)
        # SRT holds the last `latency` of media until its play time: let ingest hand it all over first
        wait_until(lambda: not input_view(s, ev["id"])["connected"], 10, "ingest to finish the connection")
        s.ok("POST", f"/v1/events/{ev['id']}/stop")
        info = judge.assert_valid_recording(dest.wait_recording_closed("loss2", 20), min_duration=9.0)
        # the published 10 s (the router's slate may follow once the input is gone): no frame missing
        video = [t for t in info["video"].dts if t < 9.99]
        audio = [t for t in info["audio"].dts if t < 9.99]
        assert len(video) == 300, "every one of the 10 s x 30 frames arrived"
        assert max(b - a for a, b in itertools.pairwise(video)) < 0.05
        assert max(b - a for a, b in itertools.pairwise(audio)) < 0.05, "no audio frame missing either"

        # 10 %, with a latency too short to recover every loss: the link holds, drops are counted
        netns.drop_udp_to(s.srt_port, 100)
        ev2 = s.create_event("10% loss")
        inp2 = s.add_input(ev2["id"], protocol="srt", latency_ms=20)
        s.ok("POST", f"/v1/events/{ev2['id']}/start")
        url2 = caller_url(inp2, latency=20_000).replace("127.0.0.1", netns.host_ip)  # ffmpeg: microseconds
        pub2 = publish_from(netns, url2, 8, tmp_path / "pub10.log")
        try:
            s.wait_input_connected(ev2["id"], inp2["id"])
            views2 = watch_input(s, ev2["id"], pub2)
            assert ffmpeg.wait_published(pub2, 30) == 0, "the publisher must not lose its connection"
        finally:
            ffmpeg.stop(pub2)
        assert all(v["connected"] for v in views2[1:-1]), "the input stayed connected throughout"
        stats2 = [v["srt"] for v in views2 if v.get("srt")]
        assert max(v["pkt_drop"] for v in stats2) > 0, "drops appear in the statistics"
        assert max(v["loss_pct"] for v in stats2) >= 5
        assert s.log_text().count("ingest.srt_accepted") == 2, "one connection per publisher: no reconnects"
    finally:
        assert s.stop() == 0
