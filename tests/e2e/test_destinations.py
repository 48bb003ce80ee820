"""Destinations that fail alone, end to end: the whole stack pushing to nginx-rtmp through the TCP
impairment proxy. Refused, reset and blackholed destinations each reach the right state and come back;
a refused publish is `rejected` with a slower retry; a slow destination drops to keyframes without
touching its neighbours or the service's memory; a retry storm stays under the reconnect cap; an
output that keeps failing is disabled until re-enabled.

One stack for the module (state-machine timings shortened through FANOUT_OUTPUT_POLICY, reconnect cap 4):
the tests read state transitions off the bus, where the output service reports each one as it happens.
"""

from __future__ import annotations

import http.server
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from shared import subjects
from shared.messages import OutputStatus, WorkerStats
from tests.peers import ffmpeg, judge
from tests.peers.bus_tap import BusTap
from tests.peers.nginx_rtmp import NginxRtmp
from tests.peers.procs import wait_until
from tests.peers.stack import Stack, start_stack
from tests.peers.tcp_proxy import TcpProxy

pytestmark = pytest.mark.e2e

STALL_LIMIT_S = 3.0
RECONNECT_CAP = 4
POLICY = f"stall_limit_s={STALL_LIMIT_S:g},C.disable_failures=3,C.retry_first_s=0.5,C.retry_cap_s=1"


@pytest.fixture(scope="module")
def dstack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = start_stack(
        tmp_path_factory.mktemp("destinations") / "stack",
        {
            "FANOUT_OUTPUT_POLICY": POLICY,
            "FANOUT_OUTPUT_RECONNECT_CAP": str(RECONNECT_CAP),
            "FANOUT_DESTINATION_ALLOWLIST": "127.0.0.0/8",  # the destinations here are on loopback
        },
    )
    try:
        yield s
    finally:
        code = s.stop()
        assert code == 0, f"the launcher did not stop cleanly (exit {code}):\n{s.log_text()[-3000:]}"


@pytest.fixture(scope="module")
def tap(dstack: Stack) -> Iterator[BusTap]:
    with BusTap((dstack.data_dir / "nats.url").read_text().strip()) as t:
        t.subscribe(subjects.ALL_OUTPUT_STATE, OutputStatus)
        t.subscribe(subjects.ALL_WORKER_STATS, WorkerStats)
        yield t


@pytest.fixture
def proxies() -> Iterator[Callable[[int], TcpProxy]]:
    started: list[TcpProxy] = []

    def make(port: int) -> TcpProxy:
        proxy = TcpProxy("127.0.0.1", port).start()
        started.append(proxy)
        return proxy

    try:
        yield make
    finally:
        for proxy in started:
            proxy.stop()


def transitions(tap: BusTap, output_id: str) -> list[OutputStatus]:
    """The output's state changes in order: each (state, state_since) once, as the worker reported it."""
    seen: dict[tuple[str, float], OutputStatus] = {}
    for s in tap.received(OutputStatus, lambda s: s.output_id == output_id):
        seen.setdefault((s.state, s.state_since), s)
    return sorted(seen.values(), key=lambda s: s.state_since)


def failures_since(tap: BusTap, output_id: str, since: float) -> list[OutputStatus]:
    return [
        s
        for s in transitions(tap, output_id)
        if s.state in ("backoff", "rejected", "disabled") and s.state_since >= since
    ]


def unpublished_cleanly(nginx_log: str, stream: str) -> bool:
    """nginx-rtmp logs `deleteStream` before `disconnect` on a connection whose publisher ended the
    stream itself, and after it when the connection just dropped."""
    publishers = re.findall(rf"\*(\d+) publish: name='{re.escape(stream)}'", nginx_log)
    if not publishers:
        return False
    ends = re.findall(rf"\*{publishers[-1]} (deleteStream|disconnect)", nginx_log)
    return ends[:1] == ["deleteStream"]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def start_event(
    stack: Stack, name: str, outputs: dict[str, tuple[str, str]]
) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    """An event with a primary input and outputs {name: (url, class)}, started; returns ids by name."""
    ev = stack.create_event(name)
    inp = stack.add_input(ev["id"])
    ids = {n: stack.add_output(ev["id"], url, n, cls)["id"] for n, (url, cls) in outputs.items()}
    stack.ok("POST", f"/v1/events/{ev['id']}/start")
    return ev, inp, ids


def stop_and_judge(
    stack: Stack, ev: dict[str, Any], dest: NginxRtmp, streams: list[str], **bounds: Any
) -> None:
    """Stop the event: every stream unpublishes cleanly and its recording judges clean."""
    stack.ok("POST", f"/v1/events/{ev['id']}/stop")
    for stream in streams:
        judge.assert_valid_recording(dest.wait_recording_closed(stream, 20), **bounds)


def test_refused_reset_and_blackholed_destinations_back_off_and_come_back(
    dstack: Stack,
    tap: BusTap,
    destination: Callable[..., NginxRtmp],
    proxies: Callable[[int], TcpProxy],
    tmp_path: Path,
) -> None:
    dest = destination()
    modes = ("refused", "reset", "blackholed")
    proxy = {m: proxies(dest.rtmp_port) for m in modes}
    ev, inp, ids = start_event(
        dstack, "impaired", {m: (f"rtmp://127.0.0.1:{proxy[m].port}/live/dest-{m}", "B") for m in modes}
    )
    # a 4 s GOP breaks class B's 2 s keyframe limit: a policy warning on each output
    pub = ffmpeg.publish(
        inp["publish_url"],
        duration=90,
        size="320x240",
        bitrate="500k",
        gop=120,
        log_path=tmp_path / "pub.log",
    )
    try:
        for m in modes:
            dest.wait_publishing(f"dest-{m}", 30, min_bytes=30_000)

        def warned() -> bool:
            outs = dstack.event(ev["id"])["outputs"]
            return all(any("keyframe interval 4.0 s" in w for w in o["warnings"]) for o in outs)

        wait_until(warned, 20, "the class B keyframe warning", interval=0.5)

        impaired = time.time()
        proxy["refused"].refuse()
        proxy["refused"].reset_connections()
        proxy["reset"].reset()
        proxy["blackholed"].blackhole()
        wait_until(
            lambda: all(len(failures_since(tap, ids[m], impaired)) >= 3 for m in modes),
            60,
            "three failures on each impaired destination",
            interval=0.2,
        )
        expected_errors = {  # the live connection's loss, then the retries' failures
            "refused": ("ConnectionResetError", "ConnectionRefusedError"),
            "reset": ("ConnectionResetError", "ConnectionResetError"),
            "blackholed": ("destination stalled: ", "no answer within 3 s"),
        }
        for m in modes:
            steps = [s for s in transitions(tap, ids[m]) if s.state_since >= impaired]
            failures = [s for s in steps if s.state == "backoff"]
            assert len(failures) >= 3 and all(s.state in ("backoff", "connecting") for s in steps), steps
            for failure, error in zip(failures[:2], expected_errors[m], strict=True):
                assert error in failure.last_error, (m, failure.last_error)
            # the silent destination is noticed within the stall limit (acknowledgements, TCP), not minutes
            assert failures[0].state_since - impaired <= 2 * STALL_LIMIT_S + 2, (m, failures[0])
            retries = [s for s in steps if s.state == "connecting"]
            # the first retry comes within 3 s of the failure
            assert retries and retries[0].state_since - failures[0].state_since <= 3.0, (m, steps)
            # later retries back off: each pause about twice the last, a quarter of it random
            delays = [s.retry_delay_s for s in failures[:3]]
            for k, d in enumerate(delays):
                assert 0.75 * 2**k <= d <= 2**k, (m, delays)
            assert len(set(delays)) == 3 and any(d != 2**k for k, d in enumerate(delays)), delays
            for fail, retry in zip(failures[:2], retries[:2], strict=True):
                assert retry.state_since - fail.state_since >= fail.retry_delay_s - 0.05, (m, steps)
        for m in ("refused", "reset"):
            assert "key" not in dstack.output_of(ev["id"], ids[m])["last_error"].lower()

        # the destinations come back: live within 5 s of the next retry
        due = {}
        for m in modes:
            status = dstack.output_of(ev["id"], ids[m])
            due[m] = (status["state"], status["next_retry_at"])
            proxy[m].pass_through()
        restored = time.time()
        for m in modes:
            dstack.wait_output_state(ev["id"], ids[m], "live", timeout=30)
            live = next(s for s in reversed(transitions(tap, ids[m])) if s.state == "live")
            attempt = max(
                (s.state_since for s in transitions(tap, ids[m]) if s.state == "connecting"
                 and s.state_since <= live.state_since),
                default=restored,
            )  # fmt: skip
            assert live.state_since - max(attempt, restored) <= 5.0, (
                m,
                due[m],
                transitions(tap, ids[m])[-4:],
            )
            assert live.connects >= 2
        for m in modes:
            dest.wait_publishing(f"dest-{m}", 15, min_bytes=10_000)
    finally:
        ffmpeg.stop(pub)
    # stopping the event unpublishes every output cleanly: each recording closes at once
    dstack.ok("POST", f"/v1/events/{ev['id']}/stop")
    for m in modes:
        dstack.wait_output_state(ev["id"], ids[m], "stopped", timeout=15)
        dest.wait_recording_closed(f"dest-{m}", 10)
    # ended with FCUnpublish + deleteStream before the socket closed, not just a dropped connection
    for m in modes:
        assert unpublished_cleanly(dest.log_text(), f"dest-{m}"), dest.log_text()[-3000:]


class _Refuse403(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(403)
        self.end_headers()

    do_POST = do_GET

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def refusing_hook() -> Iterator[str]:
    """An on_publish hook that answers 403 to every publish."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Refuse403)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/on_publish"
    finally:
        server.shutdown()
        server.server_close()


def test_a_refused_publish_is_rejected_retries_slowly_and_says_why_without_the_key(
    dstack: Stack, destination: Callable[..., NginxRtmp], refusing_hook: str, tmp_path: Path
) -> None:
    denying = destination(on_publish_url=refusing_hook)
    busy = destination()
    taken = ffmpeg.publish(busy.url("live", "taken"), duration=60, size="320x240", bitrate="300k",
                           log_path=tmp_path / "taken.log")  # fmt: skip
    key = "sk-live-" + "q7" * 12
    try:
        busy.wait_publishing("taken", 20)
        ev, _, ids = start_event(
            dstack,
            "rejected",
            {"bad key": (denying.url("live", key), "B"), "name in use": (busy.url("live", "taken"), "B")},
        )
        for name, why in (
            ("bad key", "closed the connection in answer to publish"),
            ("name in use", "NetStream.Publish.BadName"),
        ):
            out = dstack.wait_output_state(ev["id"], ids[name], "rejected", timeout=20)
            assert out["reason"] == "destination refused the publish"
            assert "destination refused the publish" in out["last_error"] and why in out["last_error"], out
            # slower than a network failure's first retry (1 s): class B waits 10 s, less a random quarter
            assert 7.5 <= out["retry_delay_s"] <= 10.0, out
            assert out["failures"] == 1 and out["connects"] == 0
        shown = str(dstack.event(ev["id"]))
        assert key not in shown and key[-8:] not in shown
        assert key not in dstack.log_text()
        dstack.ok("POST", f"/v1/events/{ev['id']}/stop")
    finally:
        ffmpeg.stop(taken)


def test_a_slow_destination_drops_to_keyframes_and_never_slows_the_others(
    dstack: Stack,
    destination: Callable[..., NginxRtmp],
    proxies: Callable[[int], TcpProxy],
    tmp_path: Path,
) -> None:
    dest = destination()
    slow = proxies(dest.rtmp_port)
    healthy = [f"healthy{i}" for i in range(4)]
    outputs = {n: (dest.url("live", n), "B") for n in healthy}
    outputs["slow"] = (f"rtmp://127.0.0.1:{slow.port}/live/slow", "B")
    ev, inp, ids = start_event(dstack, "one slow", outputs)
    duration = 30
    pub = ffmpeg.publish(
        inp["publish_url"],
        duration=duration,
        size="640x360",
        bitrate="2M",
        gop=60,
        log_path=tmp_path / "pub.log",
    )
    pid = dstack.child_pid("output")
    assert pid is not None
    try:
        for n in [*healthy, "slow"]:
            dest.wait_publishing(n, 30, min_bytes=100_000)
        # the stream's bitrate as delivered: a healthy destination's bytes over a few seconds
        first, t0 = dstack.output_of(ev["id"], ids[healthy[0]])["bytes_sent"], time.monotonic()
        time.sleep(4)  # ok-sleep: the window the bitrate is measured over
        sent = dstack.output_of(ev["id"], ids[healthy[0]])["bytes_sent"] - first
        bytes_per_s = sent / (time.monotonic() - t0)
        rss_before = rss_mb(pid)
        slow.throttle(bytes_per_s / 2)  # half the stream's bitrate
        wait_until(
            lambda: dstack.output_of(ev["id"], ids["slow"])["frames_dropped"] > 0,
            duration,
            "the slow destination to drop frames",
            interval=0.5,
        )
        ffmpeg.wait_exit(pub, duration + 30)
        rss_after = rss_mb(pid)
    finally:
        ffmpeg.stop(pub)
    slow_status = dstack.output_of(ev["id"], ids["slow"])
    assert slow_status["frames_dropped"] > 0 and slow_status["drop_events"] >= 1
    assert slow_status["connects"] == 1, (
        f"a slow destination drops to keyframes; it is not reconnected: {slow_status}"
    )
    for n in healthy:
        status = dstack.output_of(ev["id"], ids[n])
        assert status["frames_dropped"] == 0 and status["connects"] == 1, status
    assert rss_after - rss_before < 40, f"output service RSS grew {rss_before:.0f} -> {rss_after:.0f} MB"
    # the healthy recordings: every frame, no added gaps (30 fps video, 48 kHz AAC frames)
    stop_and_judge(dstack, ev, dest, healthy, min_duration=duration - 1.0, max_dts_gap=0.1)


def test_twenty_failing_at_once_leave_five_healthy_alone_under_the_reconnect_cap(
    dstack: Stack,
    tap: BusTap,
    destination: Callable[..., NginxRtmp],
    proxies: Callable[[int], TcpProxy],
    tmp_path: Path,
) -> None:
    dest = destination()
    storm = proxies(dest.rtmp_port)
    healthy = [f"ok{i}" for i in range(5)]
    failing = [f"down{i}" for i in range(20)]
    outputs = {n: (dest.url("live", n), "B") for n in healthy}
    outputs |= {n: (f"rtmp://127.0.0.1:{storm.port}/live/{n}", "B") for n in failing}
    ev, inp, ids = start_event(dstack, "storm", outputs)
    duration = 24
    pub = ffmpeg.publish(
        inp["publish_url"], duration=duration, size="320x240", bitrate="400k", log_path=tmp_path / "pub.log"
    )
    try:
        for n in healthy + failing:
            dest.wait_publishing(n, 30, min_bytes=20_000)
        blackholed = time.time()
        storm.blackhole()  # twenty destinations go silent at once; their reconnects hang until timeout

        def storming() -> bool:
            failed = sum(1 for n in failing if failures_since(tap, ids[n], blackholed))
            waiting = max((s.reconnect_waiting for s in tap.received(WorkerStats, _output_stats)), default=0)
            return failed == len(failing) and waiting > 0

        wait_until(storming, 30, "all twenty to fail and their reconnects to queue", interval=0.5)
        ffmpeg.wait_exit(pub, duration + 30)
    finally:
        ffmpeg.stop(pub)
    stats = [s for s in tap.received(WorkerStats, _output_stats) if s.ts >= blackholed]
    assert all(s.reconnect_cap == RECONNECT_CAP for s in stats)
    assert max(s.reconnecting_max for s in stats) == RECONNECT_CAP  # reached, never exceeded
    assert max(s.reconnecting for s in stats) <= RECONNECT_CAP
    for n in healthy:
        status = dstack.output_of(ev["id"], ids[n])
        assert status["state"] == "live" and status["connects"] == 1 and status["frames_dropped"] == 0, status
    stop_and_judge(dstack, ev, dest, healthy, min_duration=duration - 1.0, max_dts_gap=0.1)


def _output_stats(s: WorkerStats) -> bool:
    return s.service == "output"


def test_an_output_that_keeps_failing_is_disabled_until_re_enabled(
    dstack: Stack,
    tap: BusTap,
    destination: Callable[..., NginxRtmp],
    proxies: Callable[[int], TcpProxy],
) -> None:
    dest = destination()
    gate = proxies(dest.rtmp_port)
    gate.refuse()
    ev, _, ids = start_event(
        dstack, "flaky", {"partner": (f"rtmp://127.0.0.1:{gate.port}/live/partner", "C")}
    )
    oid = ids["partner"]
    out = dstack.wait_output_state(ev["id"], oid, "disabled", timeout=30)  # class C here: 3 failures
    assert out["failures"] == 3 and "3 failures within 10 min" in out["disabled_reason"], out
    assert out["enabled"] is True and out["next_retry_at"] is None
    assert any(
        s.state == "disabled" and s.disabled_reason
        for s in tap.received(OutputStatus, lambda s: s.output_id == oid)
    )

    # it stays off: the destination is back, yet nothing retries, not even after the worker restarts
    gate.pass_through()
    disabled_at = time.time()
    old_pid = dstack.kill_service("output")

    def reported_by_new_worker() -> bool:
        return dstack.child_pid("output") not in (None, old_pid) and any(
            s.state == "disabled" and s.ts > disabled_at + 1
            for s in tap.received(OutputStatus, lambda s: s.output_id == oid)
        )

    wait_until(reported_by_new_worker, 30, "the restarted worker to report the output", interval=0.3)
    assert gate.connections == 0, "a disabled output must not connect"
    assert [s.state for s in transitions(tap, oid) if s.state_since > disabled_at] in ([], ["disabled"])

    # re-enabled through the API: it connects and goes live
    dstack.ok("POST", f"/v1/outputs/{oid}/start")
    out = dstack.wait_output_state(ev["id"], oid, "live", timeout=20)
    assert out["disabled_reason"] == "" and out["failures"] == 0
    wait_until(lambda: dest.is_publishing("partner"), 10, "the partner destination to see the publish")
    dstack.ok("POST", f"/v1/events/{ev['id']}/stop")
