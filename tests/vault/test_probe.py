"""Verification with a live probe against a real nginx-rtmp whose on_publish checks the stream key:
connect, publish, unpublish at once; a key the destination rejects is refused and not stored."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from shared import vault_messages as vm
from shared.secret import Secret
from shared.vault_client import VaultFailure
from tests.peers.nginx_rtmp import NginxRtmp
from tests.peers.ports import free_port
from tests.peers.procs import wait_until
from tests.peers.publish_auth import PublishAuth, start_publish_auth
from tests.vault.conftest import Vault, ids

pytestmark = pytest.mark.timeout(60)

GOOD = "live_1001_ProbeGoodKey0001"
BAD = "live_1002_ProbeWrongKey002"


@pytest.fixture
def auth() -> Iterator[PublishAuth]:
    server = start_publish_auth({GOOD})
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def checked(nginx: Callable[..., NginxRtmp], auth: PublishAuth) -> NginxRtmp:
    return nginx(record=False, on_publish_url=auth.url)


def probe_url(server: NginxRtmp) -> str:
    return f"rtmp://127.0.0.1:{server.rtmp_port}/live"


async def test_a_key_the_destination_accepts_passes_and_is_unpublished_at_once(
    vault: Vault, checked: NginxRtmp, auth: PublishAuth
) -> None:
    tenant = ids("tn")
    info = await vault.client.create(tenant, "ok", "stream_key", Secret(GOOD), probe_url=probe_url(checked))
    assert info.status == "valid" and info.probed
    assert auth.accepted == [GOOD]
    wait_until(lambda: not checked.is_publishing(GOOD), 10, "the probe's publish to end")


async def test_a_key_the_destination_rejects_is_refused_and_not_stored(
    vault: Vault, checked: NginxRtmp, auth: PublishAuth
) -> None:
    tenant = ids("tn")
    with pytest.raises(VaultFailure) as err:
        await vault.client.create(tenant, "bad", "stream_key", Secret(BAD), probe_url=probe_url(checked))
    assert err.value.code == vm.PROBE_FAILED and "refused" in err.value.description
    assert BAD not in err.value.description
    assert auth.refused == [BAD]
    assert await vault.client.list(tenant) == []


async def test_verify_on_demand_marks_a_key_the_destination_stopped_accepting(
    vault: Vault, checked: NginxRtmp, auth: PublishAuth
) -> None:
    tenant = ids("tn")
    info = await vault.client.create(tenant, "k", "stream_key", Secret(GOOD))
    reply = await vault.client.verify(tenant, info.id, probe_url(checked))
    assert reply.error is None and reply.credential is not None and reply.credential.status == "valid"
    auth.allowed.clear()  # the platform revoked the key
    reply = await vault.client.verify(tenant, info.id, probe_url(checked))
    assert reply.error is not None and reply.error.code == vm.PROBE_FAILED
    assert reply.credential is not None and reply.credential.status == "invalid"
    # a later format-only verify does not clear what the live probe found
    reply = await vault.client.verify(tenant, info.id)
    assert reply.error is not None and reply.credential is not None and reply.credential.status == "invalid"


async def test_a_probe_to_a_private_address_is_refused_before_connecting(vault: Vault) -> None:
    with pytest.raises(VaultFailure) as err:
        await vault.client.create(
            ids("tn"), "x", "stream_key", Secret(GOOD), probe_url="rtmp://10.0.0.1/live"
        )
    assert err.value.code == vm.DESTINATION_REFUSED and "private" in err.value.description


async def test_an_unreachable_destination_is_told_apart_from_a_rejection(vault: Vault) -> None:
    url = f"rtmp://127.0.0.1:{free_port()}/live"
    with pytest.raises(VaultFailure) as err:
        await vault.client.create(ids("tn"), "x", "stream_key", Secret(GOOD), probe_url=url)
    assert err.value.code == vm.UNREACHABLE and "could not reach" in err.value.description
