"""The credential vault end to end: a destination key that lives only in the vault reaches nginx-rtmp
(whose on_publish checks it), and a planted canary key never shows up anywhere else: not in any
service's log, API response, bus message (every subject captured for the test's duration), file under
the data dir (database, NATS store, audit stream) or exception text."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from shared import subjects
from shared import vault_messages as vm
from tests.peers import ffmpeg, judge
from tests.peers.nginx_rtmp import NginxRtmp
from tests.peers.procs import stop, wait_until
from tests.peers.publish_auth import PublishAuth, start_publish_auth
from tests.peers.stack import ROOT, Stack

pytestmark = pytest.mark.e2e

CANARY = "live_31337_CanaryKeyNeverLeaks0"
WRONG = "live_31337_WrongKeyTheyRefuse"


class BusCanary:
    """Every message on every subject of the stack's NATS, scanned for the needles as it arrives."""

    def __init__(self, url: str, needles: list[bytes]) -> None:
        self.url = url
        self.needles = needles
        self.hits: list[str] = []
        self.subjects_seen: set[str] = set()
        self.count = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="bus-canary", daemon=True)
        self._nc: Client | None = None

    def __enter__(self) -> BusCanary:
        self._thread.start()
        self.run(self._start())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._nc is not None:
            try:
                self.run(self._nc.close())
            except Exception:
                pass  # the stack may be gone already
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def run(self, coro: Any, timeout: float = 10) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _start(self) -> None:
        self._nc = await nats.connect(self.url, name="canary", pending_size=256 * 1024 * 1024)
        await self._nc.subscribe(">", cb=self._scan, pending_msgs_limit=-1, pending_bytes_limit=-1)
        await self._nc.flush()

    async def _scan(self, msg: Msg) -> None:
        self.count += 1
        self.subjects_seen.add(".".join(msg.subject.split(".")[:3]))
        blob = msg.subject.encode() + b" " + (msg.reply or "").encode() + b" " + msg.data
        if msg.headers:
            blob += repr(msg.headers).encode()
        for needle in self.needles:
            if needle in blob:
                self.hits.append(f"{msg.subject}: {needle[:6]!r}...")

    async def last_audit(self, tenant_id: str) -> vm.AuditRecord:
        assert self._nc is not None
        msg = await self._nc.jetstream().get_last_msg(subjects.AUDIT_STREAM, subjects.vault_audit(tenant_id))
        return vm.decode(msg.data, vm.AuditRecord)


@pytest.fixture
def auth() -> Iterator[PublishAuth]:
    server = start_publish_auth({CANARY})
    try:
        yield server
    finally:
        server.stop()


def files_holding(root: Path, needles: list[bytes]) -> list[str]:
    found = []
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            found += [f"{path.relative_to(root)}" for n in needles if n in data]
    return found


def test_a_key_only_in_the_vault_reaches_nginx_and_never_leaks(
    stack: Stack, destination: Callable[..., NginxRtmp], auth: PublishAuth, tmp_path: Path
) -> None:
    dest = destination(on_publish_url=auth.url)
    base = f"rtmp://127.0.0.1:{dest.rtmp_port}/live"
    needles = [CANARY.encode(), base64.b64encode(CANARY.encode()), CANARY[6:].encode()]
    replies: list[str] = []

    def api(method: str, path: str, body: Any = None) -> tuple[int, Any]:
        status, out = stack.call(method, path, body)
        replies.append(str(out))
        return status, out

    nats_url = (stack.data_dir / "nats.url").read_text().strip()
    with BusCanary(nats_url, needles) as bus:
        # a malformed key and a key the destination refuses (live probe): refused, nothing created
        status, out = api(
            "POST",
            "/v1/credentials",
            {"name": "yt", "kind": "stream_key", "value": "abc", "preset": "youtube"},
        )
        assert status == 422 and "not a youtube stream key" in out["error"]["message"], out
        ev = stack.create_event("vault")
        status, out = api(
            "POST", f"/v1/events/{ev['id']}/outputs", {"name": "w", "url": f"{base}/{WRONG}", "verify": True}
        )
        assert status == 422 and out["error"]["code"] == "verification_failed", out
        assert auth.refused == [WRONG] and stack.event(ev["id"])["outputs"] == []
        assert api("GET", "/v1/credentials")[1]["credentials"] == []

        # the key goes into the vault, verified by a live probe (publish, unpublish at once)
        status, cred = api(
            "POST",
            "/v1/credentials",
            {"name": "main", "kind": "stream_key", "value": CANARY, "probe_url": base},
        )
        assert status == 201 and cred["hint"] == "…" + CANARY[-4:] and cred["probed"], cred
        status, out = api(
            "POST", f"/v1/events/{ev['id']}/outputs", {"name": "d", "url": base, "credential_id": cred["id"]}
        )
        assert status == 201 and out["url"] == base, out
        inp = stack.add_input(ev["id"])
        api("POST", f"/v1/events/{ev['id']}/start")
        pub = ffmpeg.publish(
            inp["publish_url"], duration=12, size="320x240", bitrate="300k", log_path=tmp_path / "pub.log"
        )
        try:
            dest.wait_publishing(CANARY, 20, min_bytes=20_000)
            # a restarted output worker (same worker id) reclaims the lease at once and resolves again
            old_pid = stack.kill_service("output")
            before = len(dest.recordings(CANARY))

            def resumed() -> bool:
                pid = stack.child_pid("output")
                return (
                    pid not in (None, old_pid)
                    and len(dest.recordings(CANARY)) > before
                    and dest.is_publishing(CANARY)
                )

            wait_until(resumed, 12, "the output to resume after its worker was killed (lease TTL is 15 s)")
            ffmpeg.wait_exit(pub, 40)
        finally:
            ffmpeg.stop(pub)
        api("POST", f"/v1/events/{ev['id']}/stop")
        rec = dest.wait_recording_closed(CANARY, 20)
        judge.assert_valid_recording(rec, min_duration=1.0)
        assert auth.accepted.count(CANARY) >= 3, "probe, first publish, publish after the restart"

        # every resolve is audited, by worker, without the value
        tenant_id = stack.ok("GET", "/v1/tenants")["tenants"][0]["id"]
        record = bus.run(bus.last_audit(tenant_id))
        assert (record.op, record.credential_id, record.requester, record.outcome) == (
            "resolve", cred["id"], "output-1", "ok",
        )  # fmt: skip
        for _ in ("GET", "GET"):
            api("GET", f"/v1/events/{ev['id']}")
        api("GET", f"/v1/credentials/{cred['id']}")
        api("GET", "/metrics")  # whatever the stack serves there
        time.sleep(1.5)  # ok-sleep: a second of worker stats and statuses on the bus, scanned too
        assert (
            bus.count > 1000 and {"fanout.vault.resolve", "$KV.fanout_leases.output"} <= bus.subjects_seen
        ), bus.subjects_seen
    log = stack.log_text()
    assert "vault.resolved" in log and "lease.acquired" in log
    assert not bus.hits, f"the key crossed the bus: {bus.hits[:5]}"
    assert not [r for r in replies if CANARY in r or CANARY[6:] in r], "an API response showed the key"
    assert CANARY not in log and CANARY[6:] not in log, "a service logged the key"
    assert files_holding(stack.data_dir, needles) == [], "the key is in a file under the data dir"
    db_files = list(stack.data_dir.glob("fanout.db*"))
    assert db_files and all(f.stat().st_size for f in db_files[:1])


def test_a_frozen_workers_outputs_are_taken_over_by_the_worker_that_wins_the_lease(
    stack: Stack, destination: Callable[..., NginxRtmp], tmp_path: Path
) -> None:
    """Leases place work: output-1 freezes, its lease lapses (15 s TTL), output-2 takes the output over,
    resolves the key as the new lease holder and delivers; output-1, thawed, finds its lease gone and stops."""
    dest = destination(extra_app_directives="drop_idle_publisher 5s;")
    ev = stack.create_event("takeover")
    inp = stack.add_input(ev["id"])
    stack.add_output(ev["id"], dest.url("live", CANARY), "d")
    stack.ok("POST", f"/v1/events/{ev['id']}/start")
    pub = ffmpeg.publish(
        inp["publish_url"], duration=60, size="320x240", bitrate="300k", log_path=tmp_path / "pub.log"
    )
    env = {
        **stack.env,
        "FANOUT_NATS_URL": (stack.data_dir / "nats.url").read_text().strip(),
        "FANOUT_WORKER_ID": "output-2",
    }
    second_log = tmp_path / "output-2.log"
    second: subprocess.Popen[bytes] | None = None
    first = stack.child_pid("output")
    assert first is not None
    try:
        dest.wait_publishing(CANARY, 20, min_bytes=20_000)
        with open(second_log, "wb") as log:
            second = subprocess.Popen(
                [sys.executable, "-m", "services.output"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        wait_until(lambda: "service.started" in second_log.read_text(), 20, "output-2 to start")
        assert "output.taken_over" not in second_log.read_text(), "output-1 holds the lease: output-2 waits"
        recordings = len(dest.recordings(CANARY))
        os.kill(first, signal.SIGSTOP)
        frozen = time.monotonic()

        def taken_over() -> bool:
            return "output.taken_over" in second_log.read_text() and len(dest.recordings(CANARY)) > recordings

        wait_until(taken_over, 45, "output-2 to take the output over once output-1's lease lapsed")
        took = time.monotonic() - frozen
        print(f"output taken over {took:.1f} s after its worker froze (lease TTL 15 s, renewals every 5 s)")
        dest.wait_publishing(CANARY, 10, min_bytes=20_000)
        assert "vault.resolved" in stack.log_text() and '"worker": "output-2"' in stack.log_text()
        os.kill(first, signal.SIGCONT)
        wait_until(lambda: "lease.lost" in stack.log_text(), 20, "output-1 to find its lease gone")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(first, signal.SIGCONT)
        ffmpeg.stop(pub)
        if second is not None:
            stop(second)
    assert took >= 10, f"taken over after {took:.1f}s: before the lease could lapse"
    assert CANARY not in second_log.read_text() and CANARY not in stack.log_text()
