"""SRT inputs and outputs through the API: options, the caller URL, desired state, live transport, secrets."""

from __future__ import annotations

import time

import pytest

from shared import messages, subjects
from shared.srt.streamid import parse
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
    # ingest gets the passphrase through desired state
    spec = await spec_of(api, ev["id"])
    assert spec is not None
    (inp,) = spec.inputs
    assert (inp.protocol, inp.passphrase, inp.pbkeylen, inp.latency_ms) == ("srt", PASSPHRASE, 32, 200)
    assert PASSPHRASE not in repr(inp)


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
