"""SRT inputs and outputs through the API: options, the caller URL, desired state, live transport, secrets."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path

import nats
import pytest

from services.ingest.input_secrets import InputSecrets
from services.ingest.keys import KeyDirectory
from services.ingest.srt_server import SrtIngest
from services.orchestrator import db, store
from services.orchestrator.credentials import KeyMover
from shared import messages, subjects
from shared import vault_messages as vm
from shared.srt import lib as L
from shared.srt.streamid import parse
from shared.vault_client import VaultClient, VaultFailure
from tests.peers.nats_server import start_nats
from tests.peers.procs import async_wait_until

from .conftest import Api
from .test_desired import spec_of

pytestmark = pytest.mark.timeout(60)

PASSPHRASE = "correct-horse-battery-staple"


async def test_srt_input_with_passphrase_gives_a_caller_url_and_keeps_the_passphrase_secret(api: Api) -> None:
    ev = await api.ok("POST", "/v1/events", {"name": "srt show"})
    created = await api.ok(
        "POST",
        f"/v1/events/{ev['id']}/inputs",
        {"role": "primary", "protocol": "srt", "passphrase": PASSPHRASE, "pbkeylen": 32, "latency_ms": 200},
    )
    key = created["stream_key"]
    url = created["publish_url"]
    assert url.startswith(f"srt://media.example.com:{api.settings.srt_port}?streamid=")
    streamid = url.split("streamid=", 1)[1].split("&", 1)[0]
    parsed = parse(streamid)
    assert (parsed.resource, parsed.mode) == (key, "publish")
    assert "&passphrase=****aple&pbkeylen=32" in url  # a hint, never the passphrase
    assert (created["encrypted"], created["pbkeylen"], created["latency_ms"]) == (True, 32, 200)
    detail = await api.ok("GET", f"/v1/events/{ev['id']}")
    view = detail["inputs"][0]
    assert key not in view["publish_url"] and view["publish_url"].endswith("&passphrase=****aple&pbkeylen=32")
    for body in (created, detail, await api.ok("GET", f"/v1/inputs/{created['id']}")):
        assert PASSPHRASE not in str(body)
    # the passphrase is a vault credential: desired state and the database name it, never hold it
    cred = created["credential_id"]
    assert cred and view["credential_id"] == cred
    info = await api.ok("GET", f"/v1/credentials/{cred}")
    assert (info["kind"], info["hint"]) == ("srt_passphrase", "…aple")
    spec = await spec_of(api, ev["id"])
    assert spec is not None
    (inp,) = spec.inputs
    assert (inp.protocol, inp.passphrase, inp.pbkeylen, inp.latency_ms) == ("srt", "", 32, 200)
    assert (inp.credential_id, inp.credential_version, inp.encrypted) == (cred, 1, True)
    assert PASSPHRASE.encode() not in messages.encode(spec) and PASSPHRASE not in repr(inp)
    row = store.get_input(api.orchestrator.engine, db.DEFAULT_TENANT_ID, created["id"])
    assert PASSPHRASE not in repr(row.__dict__)
    # ingest resolves it by reference, for this input only; the vault audits it
    vault = VaultClient(api.nc)
    secret, kind = await vault.resolve_input("tn_default", ev["id"], created["id"], cred, "ingest-test")
    assert (secret.reveal(), kind) == (PASSPHRASE, "srt_passphrase")
    for wrong in ((ev["id"], "in_other", cred), ("ev_other", created["id"], cred)):
        with pytest.raises(VaultFailure) as refused:
            await vault.resolve_input("tn_default", *wrong, "ingest-test")
        assert refused.value.code == vm.NOT_REFERENCED
    with pytest.raises(VaultFailure) as as_output:  # an output's resolve still needs the output's lease
        await vault.resolve("tn_default", ev["id"], created["id"], cred, "ingest-test")
    assert as_output.value.code == vm.NO_LEASE


async def test_an_srt_input_passphrase_rotates_and_leaves_with_its_input(api: Api) -> None:
    ev = await api.ok("POST", "/v1/events", {"name": "rotation"})
    body = {"role": "primary", "protocol": "srt", "passphrase": PASSPHRASE}
    created = await api.ok("POST", f"/v1/events/{ev['id']}/inputs", body)
    cred = created["credential_id"]
    in_use = await api.call("DELETE", f"/v1/credentials/{cred}")
    assert in_use.status == 409 and created["id"] in in_use.error["message"]
    rotated = await api.ok("POST", f"/v1/credentials/{cred}/rotate", {"value": "a-new-passphrase-9876"})
    spec = await spec_of(api, ev["id"])
    assert spec is not None and spec.inputs[0].credential_version == rotated["version"] > 1
    view = await api.ok("GET", f"/v1/inputs/{created['id']}")
    assert view["publish_url"].endswith("&passphrase=****9876&pbkeylen=16")
    secret, _ = await VaultClient(api.nc).resolve_input("tn_default", ev["id"], created["id"], cred, "t")
    assert secret.reveal() == "a-new-passphrase-9876"
    await api.ok("DELETE", f"/v1/inputs/{created['id']}")
    gone = await api.call("GET", f"/v1/credentials/{cred}")
    assert gone.status == 404
    other = await api.ok("POST", "/v1/events", {"name": "deleted whole"})
    inp = await api.ok("POST", f"/v1/events/{other['id']}/inputs", body)
    await api.ok("GET", f"/v1/credentials/{inp['credential_id']}")
    await api.ok("DELETE", f"/v1/events/{other['id']}")
    assert (await api.call("GET", f"/v1/credentials/{inp['credential_id']}")).status == 404


async def test_an_srt_input_is_not_created_half_when_its_event_is_missing_or_taken(api: Api) -> None:
    ev = await api.ok("POST", "/v1/events", {"name": "half"})
    body = {"role": "primary", "protocol": "srt", "passphrase": PASSPHRASE}
    assert (await api.call("POST", "/v1/events/ev_missing/inputs", body)).status == 404
    await api.ok("POST", f"/v1/events/{ev['id']}/inputs", body)
    taken = await api.call("POST", f"/v1/events/{ev['id']}/inputs", body)
    assert taken.status == 409
    kinds = [c["kind"] for c in (await api.ok("GET", "/v1/credentials"))["credentials"]]
    assert kinds.count("srt_passphrase") == 1, "the refused input's credential was removed"


async def test_passphrases_stored_before_the_vault_move_into_it(api: Api) -> None:
    ev = await api.ok("POST", "/v1/events", {"name": "legacy"})
    engine = api.orchestrator.engine
    legacy = store.create_input(
        engine, db.DEFAULT_TENANT_ID, ev["id"], "primary", "srt", "f" * 64, "ffff", 16
    )
    with engine.begin() as conn:  # as an orchestrator before migration 7 left it
        conn.execute(db.inputs.update().where(db.inputs.c.id == legacy.id).values(passphrase=PASSPHRASE))
    mover = KeyMover(engine, VaultClient(api.nc), api.orchestrator.desired.publish)
    assert await mover.move_all() == 1
    assert await mover.move_all() == 0, "moved once"
    row = store.get_input(engine, db.DEFAULT_TENANT_ID, legacy.id)
    assert row.passphrase == "" and row.credential_id and row.passphrase_hint == "****aple"
    spec = await spec_of(api, ev["id"])
    assert spec is not None and spec.inputs[0].credential_id == row.credential_id
    assert PASSPHRASE.encode() not in messages.encode(spec)
    secret, _ = await VaultClient(api.nc).resolve_input(
        "tn_default", ev["id"], legacy.id, row.credential_id, "t"
    )
    assert secret.reveal() == PASSPHRASE


async def test_srt_defaults_without_encryption(api: Api) -> None:
    ev = await api.ok("POST", "/v1/events", {"name": "plain srt"})
    created = await api.ok("POST", f"/v1/events/{ev['id']}/inputs", {"role": "backup", "protocol": "srt"})
    assert "passphrase" not in created["publish_url"]
    assert (created["encrypted"], created["pbkeylen"], created["latency_ms"]) == (False, None, 120)
    spec = await spec_of(api, ev["id"])
    assert spec is not None and spec.inputs[0].passphrase == "" and spec.inputs[0].latency_ms == 120
    rtmp = await api.ok("POST", f"/v1/events/{ev['id']}/inputs", {"role": "primary"})
    assert rtmp["publish_url"].startswith("rtmp://") and rtmp["latency_ms"] is None and rtmp["srt"] is None


async def test_event_detail_shows_srt_transport_and_the_degraded_verdict(api: Api) -> None:
    ev = await api.ok("POST", "/v1/events", {"name": "stats"})
    inp = await api.ok("POST", f"/v1/events/{ev['id']}/inputs", {"role": "primary", "protocol": "srt"})
    health = messages.InputHealth(
        tenant_id="tn_default",
        event_id=ev["id"],
        input_id=inp["id"],
        connected=True,
        protocol="srt",
        bitrate_bps=3_000_000,
        rtt_ms=210.5,
        recv_rate_bps=3_200_000,
        pkt_loss=120,
        pkt_retrans=118,
        pkt_drop=2,
        rcv_buffer_ms=118,
        flight_size=4,
        latency_ms=120,
        loss_pct=2.1,
        degraded=True,
        degraded_reasons=("packet loss 2.1% >= 1%", "median RTT 210 ms > 150 ms"),
        ts=time.time(),
    )
    await api.nc.publish(subjects.input_health("tn_default", ev["id"], inp["id"]), messages.encode(health))

    async def reported() -> bool:
        view = (await api.ok("GET", f"/v1/events/{ev['id']}"))["inputs"][0]
        return bool(view["connected"])

    await async_wait_until(reported, 5, "SRT health to show up")
    view = (await api.ok("GET", f"/v1/events/{ev['id']}"))["inputs"][0]
    assert view["srt"] == {
        "rtt_ms": 210.5,
        "send_rate_bps": 0,
        "recv_rate_bps": 3_200_000,
        "pkt_loss": 120,
        "pkt_retrans": 118,
        "pkt_drop": 2,
        "loss_pct": 2.1,
        "rcv_buffer_ms": 118,
        "flight_size": 4,
        "latency_ms": 120,
    }
    assert view["degraded"] is True
    assert view["degraded_reasons"] == ["packet loss 2.1% >= 1%", "median RTT 210 ms > 150 ms"]


async def test_srt_outputs_are_validated_and_their_secrets_never_shown(api: Api) -> None:
    ev = await api.ok("POST", "/v1/events", {"name": "partners"})
    path = f"/v1/events/{ev['id']}/outputs"
    url = f"srt://partner.example:9000?mode=caller&passphrase={PASSPHRASE}&streamid=#!::r=PARTNERKEY123,m=publish"
    created = await api.ok("POST", path, {"name": "partner", "url": url, "class": "C"})
    # the passphrase went to the vault: shown masked, at the end
    assert created["url"] == "srt://partner.example:9000?mode=caller&streamid=****&passphrase=****"
    listener = await api.ok("POST", path, {"name": "pull", "url": "srt://:9100?mode=listener&latency=300"})
    assert listener["url"] == "srt://:9100?mode=listener&latency=300"
    detail = await api.ok("GET", f"/v1/events/{ev['id']}")
    assert PASSPHRASE not in str(detail) and "PARTNERKEY123" not in str(detail)
    spec = await spec_of(api, ev["id"])
    # the output worker gets the URL without the passphrase, and the credential it resolves at connect time
    assert spec is not None and spec.outputs[0].url == url.replace(f"&passphrase={PASSPHRASE}", "")
    assert spec.outputs[0].credential_id == created["credential_id"]
    assert PASSPHRASE not in messages.encode(spec).decode()
    for body, field in (
        ({"name": "x", "url": "srt://partner.example"}, "url"),
        ({"name": "x", "url": "srt://partner.example:9000?passphrase=short"}, "url"),
        ({"name": "x", "url": "srt://partner.example:9000?mode=rendezvous"}, "url"),
        ({"name": "x", "url": "srt://partner.example:9000", "preset": "youtube"}, "preset"),
        ({"name": "x", "url": "srt://partner.example:9000", "backup": True}, "backup"),
    ):
        reply = await api.call("POST", path, body)
        assert reply.status == 422 and reply.error["field"] == field, reply.body
    bad = await api.call("POST", path, {"name": "x", "url": f"srt://h:9?passphrase={PASSPHRASE}&pbkeylen=7"})
    assert bad.status == 422 and PASSPHRASE not in str(bad.body)


async def test_ingest_admits_an_encrypted_caller_only_with_the_resolved_passphrase(api: Api) -> None:
    """The handshake hook with the real directory, vault and desired state: before the passphrase is
    resolved (or after a rotation, before the new one is) a caller is refused, never let in unencrypted."""
    ev = await api.ok("POST", "/v1/events", {"name": "hook"})
    body = {"role": "primary", "protocol": "srt", "passphrase": PASSPHRASE, "pbkeylen": 24}
    created = await api.ok("POST", f"/v1/events/{ev['id']}/inputs", body)
    keys, secrets = KeyDirectory(), InputSecrets(VaultClient(api.nc), "ingest-test", retry_s=0.1)
    srt = SrtIngest(api.nc, keys, secrets, "ingest-test")
    caller = f"#!::r={created['stream_key']},m=publish"

    async def load() -> None:
        spec = await spec_of(api, ev["id"])
        keys.update(ev["id"], spec)
        secrets.update(ev["id"], spec)

    await load()
    before = srt._hook(1, "127.0.0.1:5000", caller)
    assert (before.accept, before.reject_code, before.passphrase) == (False, L.SRT_REJX_UNAVAILABLE, "")
    task = asyncio.ensure_future(secrets.run())
    try:
        await async_wait_until(lambda: not secrets.missing(), 10, "the passphrase to be resolved")
        admitted = srt._hook(2, "127.0.0.1:5001", caller)
        assert (admitted.accept, admitted.passphrase, admitted.latency_ms) == (True, PASSPHRASE, 120)
        await api.ok(
            "POST", f"/v1/credentials/{created['credential_id']}/rotate", {"value": "rotated-phrase-5555"}
        )
        await load()
        assert not srt._hook(3, "127.0.0.1:5002", caller).accept, "the old version is not used once rotated"
        await async_wait_until(lambda: not secrets.missing(), 10, "the new version to be resolved")
        assert srt._hook(4, "127.0.0.1:5003", caller).passphrase == "rotated-phrase-5555"
        await api.ok("DELETE", f"/v1/inputs/{created['id']}")
        await load()
        assert secrets.missing() == [] and secrets.get(created["id"], created["credential_id"], 2) is None
        assert not srt._hook(5, "127.0.0.1:5004", caller).accept
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_without_the_vault_ingest_refuses_encrypted_callers_and_backs_off(
    api: Api, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ev = await api.ok("POST", "/v1/events", {"name": "no vault"})
    body = {"role": "primary", "protocol": "srt", "passphrase": PASSPHRASE}
    created = await api.ok("POST", f"/v1/events/{ev['id']}/inputs", body)
    spec = await spec_of(api, ev["id"])
    lonely = start_nats(tmp_path / "nats")  # a bus where no vault answers
    nc = await nats.connect(lonely.url)
    secrets = InputSecrets(VaultClient(nc), "ingest-test", retry_s=0.05)
    keys = KeyDirectory()
    keys.update(ev["id"], spec)
    secrets.update(ev["id"], spec)
    srt = SrtIngest(nc, keys, secrets, "ingest-test")
    task = asyncio.ensure_future(secrets.run())
    try:
        with caplog.at_level(logging.WARNING, logger="services.ingest.input_secrets"):
            await asyncio.sleep(0)
            await async_wait_until(lambda: "ingest.vault_unavailable" in caplog.text, 5, "a first attempt")
            await asyncio.sleep(1.5)  # the window the attempts are counted in
            attempts = caplog.text.count("ingest.vault_unavailable")
        # 0.05 s doubling: at most 6 attempts in 1.5 s, where a fixed pause would have made 30
        assert 2 <= attempts <= 7, attempts
        assert secrets.missing() == [created["id"]]
        refused = srt._hook(1, "127.0.0.1:5000", f"#!::r={created['stream_key']},m=publish")
        assert (refused.accept, refused.reject_code) == (False, L.SRT_REJX_UNAVAILABLE)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await nc.close()
        lonely.stop()
