"""What an output does at connect time: the key from the vault, the address checked and pinned."""

from __future__ import annotations

import pytest

from services.output import secure_connect
from shared import netguard
from shared.secret import Secret

ALLOW = netguard.Allowlist.parse("127.0.0.0/8")


async def key() -> Secret:
    return Secret("live_1_TheRealKey0001")


def test_a_keyless_url_gets_a_placeholder_until_connect() -> None:
    t = secure_connect.target_of("rtmp://127.0.0.1:1935/live", has_credential=True)
    assert (t.app, t.stream_name) == ("live", secure_connect.PLACEHOLDER_KEY)
    t = secure_connect.target_of("rtmps://b.rtmps.youtube.com:443/live2?backup=1", has_credential=True)
    assert t.app == "live2?backup=1"


async def test_the_resolved_key_becomes_the_stream_name_and_the_checked_address_is_pinned() -> None:
    target = secure_connect.target_of("rtmp://localhost:1940/live", has_credential=True)
    prepared = await secure_connect.prepare(target, key, ALLOW)
    assert prepared.target.stream_name == "live_1_TheRealKey0001" and prepared.key is not None
    assert prepared.address == "127.0.0.1" and prepared.target.host == "localhost"
    assert "TheRealKey" not in repr(prepared)


@pytest.mark.parametrize(
    "url", ["rtmp://0x7f.1/live/k", "rtmp://localhost/live/k", "rtmp://169.254.169.254/x/k"]
)
async def test_the_guard_refuses_at_connect_time_too(url: str) -> None:
    with pytest.raises(secure_connect.Refused, match="outputs may only connect to public addresses"):
        await secure_connect.prepare(secure_connect.target_of(url, False), None, netguard.Allowlist())


async def test_a_vault_refusal_is_a_refusal_and_a_silent_vault_a_network_error() -> None:
    from shared.vault_client import VaultClient, VaultFailure, VaultUnavailable

    class FakeVault(VaultClient):
        def __init__(self, error: Exception) -> None:
            self.error = error

        async def resolve(self, *args: object, **kwargs: object) -> tuple[Secret, str]:
            raise self.error

    target = secure_connect.target_of("rtmp://127.0.0.1/live", True)
    refusing = secure_connect.key_resolver(
        FakeVault(VaultFailure("no_lease", "not yours")), "t", "e", "o", "c", "w"
    )
    with pytest.raises(secure_connect.Refused, match="no_lease"):
        await secure_connect.prepare(target, refusing, ALLOW)
    silent = secure_connect.key_resolver(FakeVault(VaultUnavailable("x")), "t", "e", "o", "c", "w")
    with pytest.raises(ConnectionError):
        await secure_connect.prepare(target, silent, ALLOW)
