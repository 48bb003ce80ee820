"""Credentials through the API: write-only resources in the vault, outputs that reference them, keys split
off output URLs, verification (format and live probe against nginx-rtmp with on_publish), the SSRF guard,
optimistic concurrency, master key rotation."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from services.orchestrator import db, store
from services.orchestrator.api import API
from services.orchestrator.credentials import KeyMover
from shared import messages, netguard
from shared.vault_client import VaultClient
from tests.orchestrator.conftest import Api
from tests.orchestrator.test_desired import spec_of
from tests.peers.nginx_rtmp import NginxRtmp
from tests.peers.publish_auth import PublishAuth, start_publish_auth

pytestmark = pytest.mark.timeout(60)

KEY = "live_4242_CanaryApiKeyZyXw"
YT_KEY = "abcd-efgh-ijkl-mnop-qrst"


@pytest.fixture
def sink() -> Iterator[list[str]]:
    """Every response body of a test, to check none of them holds a value."""
    seen: list[str] = []
    yield seen


async def call(
    api: Api, seen: list[str], method: str, path: str, body: Any = None, key: str = "admin"
) -> Any:
    reply = await api.call(method, path, body, key)
    seen.append(str(reply.body))
    return reply


async def new_event(api: Api, key: str = "admin") -> str:
    return str((await api.ok("POST", "/v1/events", {"name": "show"}, key))["id"])


async def test_a_credential_is_write_only(
    api: Api, sink: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    created = await call(
        api, sink, "POST", "/v1/credentials", {"name": "twitch", "kind": "stream_key", "value": KEY}
    )
    assert created.status == 201, created.body
    cred = created.body
    assert cred["hint"] == "…" + KEY[-4:] and cred["version"] == 1 and cred["status"] == "valid"
    assert set(cred) >= {"id", "name", "kind", "hint", "version", "status", "created_at", "updated_at"}
    got = await call(api, sink, "GET", f"/v1/credentials/{cred['id']}")
    assert got.status == 200 and got.body == cred
    listed = await call(api, sink, "GET", "/v1/credentials")
    assert [c["id"] for c in listed.body["credentials"]] == [cred["id"]]
    rotated = await call(api, sink, "POST", f"/v1/credentials/{cred['id']}/rotate", {"value": KEY[::-1]})
    assert (
        rotated.status == 200
        and rotated.body["version"] == 2
        and rotated.body["hint"] == "…" + KEY[::-1][-4:]
    )
    verified = await call(api, sink, "POST", f"/v1/credentials/{cred['id']}/verify")
    assert verified.status == 200 and verified.body["status"] == "valid"
    deleted = await call(api, sink, "DELETE", f"/v1/credentials/{cred['id']}")
    assert deleted.status == 204
    assert (await call(api, sink, "GET", f"/v1/credentials/{cred['id']}")).status == 404
    for text in [*sink, caplog.text]:
        assert KEY not in text and KEY[::-1] not in text


async def test_each_tenant_sees_only_its_credentials(api: Api) -> None:
    a, b = await api.new_tenant_key("a"), await api.new_tenant_key("b")
    ca = await api.ok("POST", "/v1/credentials", {"name": "a", "kind": "stream_key", "value": KEY}, a)
    await api.ok("POST", "/v1/credentials", {"name": "b", "kind": "stream_key", "value": KEY}, b)
    assert [c["id"] for c in (await api.ok("GET", "/v1/credentials", key=a))["credentials"]] == [ca["id"]]
    ev_b = await new_event(api, b)
    reply = await api.call(
        "POST",
        f"/v1/events/{ev_b}/outputs",
        {"name": "x", "url": "rtmp://127.0.0.1/app", "credential_id": ca["id"]},
        b,
    )
    assert reply.status == 422 and reply.error["field"] == "credential_id", "another tenant's credential"


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"kind": "stream_key", "value": "has space in it"}, "value", "printable ASCII without spaces"),
        (
            {"kind": "stream_key", "value": "abcd-efgh", "preset": "youtube"},
            "value",
            "not a youtube stream key",
        ),
        ({"kind": "srt_passphrase", "value": "short"}, "value", "10 to 79"),
        ({"kind": "ftp_password", "value": "x"}, "kind", ""),
        ({"kind": "stream_key", "value": ""}, "value", ""),
    ],
)
async def test_a_malformed_value_is_refused(api: Api, body: dict[str, Any], field: str, message: str) -> None:
    reply = await api.call("POST", "/v1/credentials", {"name": "bad", **body})
    assert reply.status == 422 and reply.error["field"] == field and message in reply.error["message"]
    if body["value"]:
        assert body["value"] not in str(reply.body)
    assert (await api.ok("GET", "/v1/credentials"))["credentials"] == []


async def test_an_output_with_a_key_in_its_url_has_the_key_split_off_into_the_vault(api: Api) -> None:
    ev = await new_event(api)
    url = f"rtmp://127.0.0.1:1935/live/{KEY}"
    out = await api.ok("POST", f"/v1/events/{ev}/outputs", {"name": "dest", "url": url})
    assert out["url"] == "rtmp://127.0.0.1:1935/live/****" + KEY[-4:] and out["credential_id"]
    cred = await api.ok("GET", f"/v1/credentials/{out['credential_id']}")
    assert cred["kind"] == "stream_key" and cred["hint"] == "…" + KEY[-4:]
    spec = await spec_of(api, ev)
    assert spec is not None
    assert (spec.outputs[0].url, spec.outputs[0].credential_id) == (
        "rtmp://127.0.0.1:1935/live",
        out["credential_id"],
    )
    db_path = api.settings.data_dir / "fanout.db"
    if db_path.exists():
        raw = b"".join(p.read_bytes() for p in db_path.parent.glob("fanout.db*"))
        assert KEY.encode() not in raw, "the key is in the database file"
    # deleting the output deletes the credential split off its URL
    assert (await api.call("DELETE", f"/v1/outputs/{out['id']}")).status == 204
    assert (await api.call("GET", f"/v1/credentials/{out['credential_id']}")).status == 404


async def test_an_output_may_reference_a_credential(api: Api) -> None:
    ev = await new_event(api)
    cred = await api.ok("POST", "/v1/credentials", {"name": "k", "kind": "stream_key", "value": KEY})
    out = await api.ok(
        "POST",
        f"/v1/events/{ev}/outputs",
        {"name": "d", "url": "rtmp://127.0.0.1/live/", "credential_id": cred["id"]},
    )
    assert out["url"] == "rtmp://127.0.0.1/live" and out["credential_id"] == cred["id"]
    preset = await api.ok(
        "POST", f"/v1/events/{ev}/outputs", {"name": "t", "preset": "twitch", "credential_id": cred["id"]}
    )
    assert preset["url"] == "rtmps://live.twitch.tv:443/app"
    spec = await spec_of(api, ev)
    assert spec is not None and {o.credential_id for o in spec.outputs} == {cred["id"]}
    # in use: the credential cannot be deleted; a rotation reaches every output at its next connect
    reply = await api.call("DELETE", f"/v1/credentials/{cred['id']}")
    assert reply.status == 409 and "used by 2 output(s)" in reply.error["message"]
    unknown = await api.call(
        "POST",
        f"/v1/events/{ev}/outputs",
        {"name": "u", "url": "rtmp://127.0.0.1/live", "credential_id": "cred_0"},
    )
    assert unknown.status == 422 and unknown.error["field"] == "credential_id"


async def test_a_malformed_key_in_an_output_url_is_refused_and_nothing_is_created(api: Api) -> None:
    ev = await new_event(api)
    reply = await api.call(
        "POST", f"/v1/events/{ev}/outputs", {"name": "yt", "url": "rtmp://a.rtmp.youtube.com/live2/abc-def"}
    )
    assert reply.status == 422 and reply.error["field"] == "url"
    assert "not a youtube stream key" in reply.error["message"] and "abc-def" not in str(reply.body)
    assert (await api.ok("GET", f"/v1/events/{ev}"))["outputs"] == []
    assert (await api.ok("GET", "/v1/credentials"))["credentials"] == []


async def test_two_concurrent_rotations_one_wins_one_conflicts(api: Api) -> None:
    cred = await api.ok("POST", "/v1/credentials", {"name": "k", "kind": "stream_key", "value": KEY})
    path = f"/v1/credentials/{cred['id']}/rotate"
    a, b = await asyncio.gather(
        api.call("POST", path, {"value": "live_1_WriterOneAAAAAA", "version": 1}),
        api.call("POST", path, {"value": "live_2_WriterTwoBBBBBB", "version": 1}),
    )
    assert sorted((a.status, b.status)) == [200, 409], (a.body, b.body)
    winner = a if a.status == 200 else b
    after = await api.ok("GET", f"/v1/credentials/{cred['id']}")
    assert after["version"] == 2 and after["hint"] == winner.body["hint"]


SPELLINGS = [
    "127.0.0.1", "2130706433", "0177.0.0.1", "0x7f.1", "127.1", "[::1]", "[::ffff:127.0.0.1]", "localhost",
    "169.254.169.254", "10.0.0.8", "192.168.1.10", "172.16.5.5", "[fd00::1]", "0.0.0.0", "224.0.0.1",
]  # fmt: skip


MALFORMED = {"2130706433", "0177.0.0.1", "127.1"}  # the URL parser refuses these spellings outright


@pytest.mark.parametrize("host", SPELLINGS)
async def test_internal_destinations_are_refused_unless_allow_listed(api: Api, host: str) -> None:
    ev = await new_event(api)
    app = api.orchestrator.app[API]
    app.allowlist = netguard.Allowlist()  # nothing allowed
    url = f"rtmp://{host}:1935/live/{KEY}"
    reply = await api.call("POST", f"/v1/events/{ev}/outputs", {"name": "x", "url": url})
    assert reply.status == 422 and reply.error["field"] == "url", reply.body
    assert KEY not in str(reply.body)
    assert (await api.ok("GET", f"/v1/events/{ev}"))["outputs"] == []
    # allow-listed, the loopback range passes the guard (some spellings are still malformed URLs)
    app.allowlist = netguard.Allowlist.parse("127.0.0.0/8,::1/128")
    reply = await api.call("POST", f"/v1/events/{ev}/outputs", {"name": "x", "url": url})
    loopback = netguard.literal_address(host) is None or netguard.forbidden_reason(
        netguard.literal_address(host)  # type: ignore[arg-type]
    ) in ("loopback", "loopback (IPv4 127.0.0.1 inside IPv6)")
    if loopback and host not in MALFORMED:
        assert reply.status == 201, reply.body
    else:
        assert reply.status == 422, reply.body
        if host not in MALFORMED:
            assert "outputs may only connect to public addresses" in reply.error["message"]


@pytest.mark.parametrize("url", ["http://example.com/live/key", "file:///etc/passwd", "gopher://127.0.0.1/x"])
async def test_only_rtmp_rtmps_and_srt_are_destinations(api: Api, url: str) -> None:
    ev = await new_event(api)
    reply = await api.call("POST", f"/v1/events/{ev}/outputs", {"name": "x", "url": url})
    assert reply.status == 422 and reply.error["field"] == "url"


@pytest.fixture
def auth() -> Iterator[PublishAuth]:
    server = start_publish_auth({KEY})
    try:
        yield server
    finally:
        server.stop()


async def test_verification_with_a_live_probe_refuses_a_key_the_destination_rejects(
    api: Api, nginx: Callable[..., NginxRtmp], auth: PublishAuth
) -> None:
    dest = nginx(record=False, on_publish_url=auth.url)
    base = f"rtmp://127.0.0.1:{dest.rtmp_port}/live"
    ev = await new_event(api)
    # the right key: created, probed, unpublished at once
    good = await api.ok(
        "POST", f"/v1/events/{ev}/outputs", {"name": "ok", "url": f"{base}/{KEY}", "verify": True}
    )
    assert auth.accepted == [KEY]
    # a key the destination rejects: 422, no output, no credential
    wrong = "live_4242_WrongKeyForProbe"
    reply = await api.call(
        "POST", f"/v1/events/{ev}/outputs", {"name": "bad", "url": f"{base}/{wrong}", "verify": True}
    )
    assert reply.status == 422 and reply.error["code"] == "verification_failed", reply.body
    assert "refused" in reply.error["message"] and wrong not in str(reply.body)
    outputs = (await api.ok("GET", f"/v1/events/{ev}"))["outputs"]
    assert [o["id"] for o in outputs] == [good["id"]]
    assert [c["id"] for c in (await api.ok("GET", "/v1/credentials"))["credentials"]] == [
        good["credential_id"]
    ]
    # the platform revokes the key: verify on demand says so, and the output may not start
    auth.allowed.clear()
    cred = good["credential_id"]
    reply = await api.call("POST", f"/v1/credentials/{cred}/verify", {"probe_url": base})
    assert reply.status == 422 and reply.error["code"] == "verification_failed"
    assert (await api.ok("GET", f"/v1/credentials/{cred}"))["status"] == "invalid"
    await api.ok("POST", f"/v1/outputs/{good['id']}/stop")
    start = await api.call("POST", f"/v1/outputs/{good['id']}/start")
    assert start.status == 422 and start.error["field"] == "credential_id"
    again = await api.call(
        "POST", f"/v1/events/{ev}/outputs", {"name": "again", "url": base, "credential_id": cred}
    )
    assert again.status == 422 and "failed verification" in again.error["message"]
    # rotating to a key the platform accepts makes it usable again
    auth.allowed.add(KEY[::-1])
    await api.ok("POST", f"/v1/credentials/{cred}/rotate", {"value": KEY[::-1], "probe_url": base})
    assert (await api.call("POST", f"/v1/outputs/{good['id']}/start")).status == 200


async def test_a_probe_url_to_an_internal_address_is_refused(api: Api) -> None:
    cred = await api.ok("POST", "/v1/credentials", {"name": "k", "kind": "stream_key", "value": KEY})
    reply = await api.call(
        "POST", f"/v1/credentials/{cred['id']}/verify", {"probe_url": "rtmp://169.254.169.254/x"}
    )
    assert (
        reply.status == 422 and reply.error["field"] == "probe_url" and "link-local" in reply.error["message"]
    )


async def test_admin_rotates_the_master_key_and_every_secret_stays_readable(api: Api) -> None:
    ids = [
        (
            await api.ok(
                "POST", "/v1/credentials", {"name": f"k{n}", "kind": "stream_key", "value": f"{KEY}{n}"}
            )
        )["id"]
        for n in range(3)
    ]
    tenant_key = await api.new_tenant_key()
    assert (await api.call("POST", "/v1/vault/rekey", {}, tenant_key)).status == 403
    rekeyed = await api.ok("POST", "/v1/vault/rekey", {"retire_previous": True})
    assert rekeyed["active_version"] == 2 and rekeyed["rewrapped"] == 3 and rekeyed["retired"] == [1]
    for cred in ids:
        assert (await api.ok("POST", f"/v1/credentials/{cred}/verify"))["status"] == "valid"


async def test_keys_stored_before_the_vault_move_into_it(api: Api) -> None:
    ev = await new_event(api)
    engine = api.orchestrator.engine
    legacy = store.create_output(engine, db.DEFAULT_TENANT_ID, ev, "old", f"rtmp://127.0.0.1/live/{KEY}", "B")
    odd = store.create_output(
        engine,
        db.DEFAULT_TENANT_ID,
        ev,
        "odd",
        "rtmp://a.rtmp.youtube.com/live2/not-a-yt-key",
        "B",
        preset="youtube",
    )
    phrase = "legacy-srt-passphrase-77"
    srt = store.create_output(
        engine, db.DEFAULT_TENANT_ID, ev, "srt", f"srt://127.0.0.1:9000?mode=caller&passphrase={phrase}", "C"
    )
    mover = KeyMover(engine, VaultClient(api.nc), api.orchestrator.desired.publish)
    assert await mover.move_all() == 3
    assert await mover.move_all() == 0, "moved once"
    out = await api.ok("GET", f"/v1/outputs/{legacy.id}")
    assert out["url"] == "rtmp://127.0.0.1/live/****" + KEY[-4:] and out["credential_id"]
    spec = await spec_of(api, ev)
    assert spec is not None
    by_id = {o.id: o for o in spec.outputs}
    assert (by_id[legacy.id].url, by_id[legacy.id].credential_id) == (
        "rtmp://127.0.0.1/live",
        out["credential_id"],
    )
    assert by_id[odd.id].url == "rtmp://a.rtmp.youtube.com/live2" and by_id[odd.id].credential_id
    assert by_id[srt.id].url == "srt://127.0.0.1:9000?mode=caller" and by_id[srt.id].credential_id
    assert KEY.encode() not in messages.encode(spec) and phrase.encode() not in messages.encode(spec)


async def test_an_srt_output_takes_its_passphrase_from_the_vault(api: Api) -> None:
    ev = await new_event(api)
    phrase = "srt-passphrase-canary-0042"
    cred = await api.ok("POST", "/v1/credentials", {"name": "p", "kind": "srt_passphrase", "value": phrase})
    key = await api.ok("POST", "/v1/credentials", {"name": "k", "kind": "stream_key", "value": KEY})
    url = "srt://127.0.0.1:9000?mode=caller&pbkeylen=16&latency=200"
    out = await api.ok(
        "POST", f"/v1/events/{ev}/outputs", {"name": "s", "url": url, "credential_id": cred["id"]}
    )
    assert out["credential_id"] == cred["id"] and out["url"].endswith("&passphrase=****")
    wrong_kind = await api.call(
        "POST", f"/v1/events/{ev}/outputs", {"name": "s", "url": url, "credential_id": key["id"]}
    )
    assert wrong_kind.status == 422 and "needs a srt_passphrase" in wrong_kind.error["message"]
    both = await api.call(
        "POST",
        f"/v1/events/{ev}/outputs",
        {"name": "s", "url": f"{url}&passphrase={phrase}", "credential_id": cred["id"]},
    )
    assert both.status == 422 and phrase not in str(both.body)
    spec = await spec_of(api, ev)
    assert spec is not None and spec.outputs[0].url == url and spec.outputs[0].credential_id == cred["id"]
