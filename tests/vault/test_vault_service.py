"""The vault service over a real nats-server: write-only credentials, resolve only for the lease holder of
an output that references the credential, audited; tampering, moved rows, rotation and retired master
keys; optimistic concurrency; no plaintext on the bus or in the database."""

from __future__ import annotations

import asyncio
import base64
import os
import stat
from pathlib import Path

import pytest
import sqlalchemy as sa
from nats.aio.client import Client
from nats.aio.msg import Msg

from services.vault import master_keys, store
from shared import bus, leases, subjects
from shared import vault_messages as vm
from shared.leases import LeaseKeeper
from shared.secret import Secret
from shared.vault_client import VaultClient, VaultFailure
from tests.peers.procs import async_wait_until
from tests.vault.conftest import Vault, ids, start_vault

pytestmark = pytest.mark.timeout(60)

KEY = "live_123456789_CanaryKeyAbCdEf0123"


async def create(vault: Vault, tenant: str, value: str = KEY, **kw: str) -> vm.CredentialInfo:
    return await vault.client.create(tenant, "twitch main", "stream_key", Secret(value), **kw)


async def leased_output(
    vault: Vault, tenant: str, credential_id: str, worker: str = "output-1"
) -> tuple[str, str]:
    event_id, output_id = ids("ev"), ids("out")
    await vault.publish_output(tenant, event_id, output_id, credential_id)
    keeper = LeaseKeeper(await bus.lease_bucket(vault.nc), worker)
    assert await keeper.want(output_id)
    return event_id, output_id


def db_bytes(vault: Vault) -> bytes:
    return b"".join(p.read_bytes() for p in vault.db_path.parent.glob("fanout.db*"))


async def test_create_is_write_only_and_the_value_is_stored_encrypted(vault: Vault) -> None:
    tenant = ids("tn")
    info = await create(vault, tenant)
    assert info.hint == "…" + KEY[-4:] and info.version == 1 and info.status == "valid"
    assert info.master_version == 1
    assert KEY not in repr(info) and KEY not in vm.encode(info).decode()
    assert (await vault.client.describe(tenant, info.id)) == info
    assert [c.id for c in await vault.client.list(tenant)] == [info.id]
    assert await vault.client.list(ids("tn")) == []
    assert KEY.encode() not in db_bytes(vault)


async def test_the_generated_master_key_file_is_private(vault: Vault) -> None:
    path = vault.data_dir / master_keys.DEFAULT_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    keys, _ = master_keys.parse(path.read_text(), "file")
    assert list(keys) == [1] and len(keys[1]) == 32


async def test_another_tenant_sees_nothing(vault: Vault) -> None:
    owner, other = ids("tn"), ids("tn")
    info = await create(vault, owner)
    for call in (
        vault.client.describe(other, info.id),
        vault.client.verify(other, info.id),
        vault.client.rotate(other, info.id, Secret("live_1_AAAAAAAAAAAAAA")),
        vault.client.delete(other, info.id),
    ):
        with pytest.raises(VaultFailure) as err:
            await call
        assert err.value.code == vm.NOT_FOUND
    assert (await vault.client.describe(owner, info.id)).version == 1


async def test_the_lease_holder_of_a_referencing_output_resolves_and_it_is_audited(vault: Vault) -> None:
    tenant = ids("tn")
    info = await create(vault, tenant)
    event_id, output_id = await leased_output(vault, tenant, info.id, "output-7")
    js = vault.nc.jetstream()
    before = (await js.stream_info(subjects.AUDIT_STREAM)).state.last_seq
    value, kind = await vault.client.resolve(tenant, event_id, output_id, info.id, "output-7")
    assert value.reveal() == KEY and kind == "stream_key"
    msg = await js.get_last_msg(subjects.AUDIT_STREAM, subjects.vault_audit(tenant))
    assert msg.seq > before
    record = vm.decode(msg.data, vm.AuditRecord)
    assert (record.op, record.credential_id, record.requester, record.outcome, record.output_id) == (
        "resolve", info.id, "output-7", "ok", output_id,
    )  # fmt: skip
    assert KEY.encode() not in msg.data


async def test_a_worker_without_the_lease_is_refused(vault: Vault) -> None:
    tenant = ids("tn")
    info = await create(vault, tenant)
    event_id, output_id = await leased_output(vault, tenant, info.id, "output-1")
    with pytest.raises(VaultFailure) as err:
        await vault.client.resolve(tenant, event_id, output_id, info.id, "output-2")
    assert err.value.code == vm.NO_LEASE
    # nobody holds the lease of an output at all
    event2, output2 = ids("ev"), ids("out")
    await vault.publish_output(tenant, event2, output2, info.id)
    with pytest.raises(VaultFailure) as err:
        await vault.client.resolve(tenant, event2, output2, info.id, "output-1")
    assert err.value.code == vm.NO_LEASE
    js = vault.nc.jetstream()
    record = vm.decode(
        (await js.get_last_msg(subjects.AUDIT_STREAM, subjects.vault_audit(tenant))).data, vm.AuditRecord
    )
    assert record.outcome == vm.NO_LEASE and record.requester == "output-1"


async def test_only_a_credential_the_output_references_resolves(vault: Vault) -> None:
    tenant, other = ids("tn"), ids("tn")
    mine = await create(vault, tenant)
    unrelated = await create(vault, tenant, "live_42_SomeOtherKeyXYZ0")
    event_id, output_id = await leased_output(vault, tenant, mine.id)
    with pytest.raises(VaultFailure) as err:
        await vault.client.resolve(tenant, event_id, output_id, unrelated.id, "output-1")
    assert err.value.code == vm.NOT_REFERENCED
    with pytest.raises(VaultFailure) as err:  # the right ids, claimed for another tenant
        await vault.client.resolve(other, event_id, output_id, mine.id, "output-1")
    assert err.value.code == vm.NOT_REFERENCED


async def test_a_resolve_whose_audit_record_cannot_be_stored_is_refused(vault: Vault) -> None:
    tenant = ids("tn")
    info = await create(vault, tenant)
    event_id, output_id = await leased_output(vault, tenant, info.id)
    js = vault.nc.jetstream()
    await js.delete_stream(subjects.AUDIT_STREAM)
    try:
        with pytest.raises(VaultFailure) as err:
            await vault.client.resolve(tenant, event_id, output_id, info.id, "output-1")
        assert err.value.code == vm.AUDIT_UNAVAILABLE
    finally:
        from services.vault.audit import ensure_stream

        await ensure_stream(js)
    value, _ = await vault.client.resolve(tenant, event_id, output_id, info.id, "output-1")
    assert value.reveal() == KEY


def tamper(vault: Vault, credential_id: str, **values: object) -> None:
    with vault.engine.begin() as conn:
        conn.execute(
            store.credentials.update().where(store.credentials.c.id == credential_id).values(**values)
        )


def row_of(vault: Vault, credential_id: str) -> sa.Row:  # type: ignore[type-arg]
    with vault.engine.connect() as conn:
        found = conn.execute(
            sa.select(store.credentials).where(store.credentials.c.id == credential_id)
        ).first()
    assert found is not None
    return found


async def test_a_tampered_ciphertext_fails_with_a_clear_error(vault: Vault) -> None:
    tenant = ids("tn")
    info = await create(vault, tenant)
    event_id, output_id = await leased_output(vault, tenant, info.id)
    ciphertext = bytearray(row_of(vault, info.id).ciphertext)
    ciphertext[15] ^= 0x40
    tamper(vault, info.id, ciphertext=bytes(ciphertext))
    with pytest.raises(VaultFailure) as err:
        await vault.client.resolve(tenant, event_id, output_id, info.id, "output-1")
    assert err.value.code == "decrypt_failed"
    assert "did not authenticate" in err.value.description
    reply = await vault.client.verify(tenant, info.id)
    assert reply.error is not None and reply.error.code == "decrypt_failed"


async def test_a_ciphertext_moved_to_another_tenants_row_does_not_decrypt(vault: Vault) -> None:
    victim, attacker = ids("tn"), ids("tn")
    secret = await create(vault, victim)
    decoy = await create(vault, attacker, "live_1_AttackerOwnKey00")
    event_id, output_id = await leased_output(vault, attacker, decoy.id)
    stolen = row_of(vault, secret.id)
    tamper(vault, decoy.id, wrapped_key=stolen.wrapped_key, ciphertext=stolen.ciphertext)
    with pytest.raises(VaultFailure) as err:
        await vault.client.resolve(attacker, event_id, output_id, decoy.id, "output-1")
    assert err.value.code == "decrypt_failed" and "another credential or tenant" in err.value.description


async def test_rotation_of_the_master_key_rewraps_every_secret_and_retires_the_old_version(
    vault: Vault,
) -> None:
    tenant = ids("tn")
    values = [f"live_{n}_RotationKey{n:04d}xyz" for n in range(4)]
    infos = [await create(vault, tenant, v) for v in values]
    before = {i.id: row_of(vault, i.id) for i in infos}
    reply = await vault.client.rekey(retire_previous=True)
    assert reply.active_version == 2 and reply.rewrapped == 4 and reply.retired == [1] and not reply.failed
    for info, value in zip(infos, values, strict=True):
        row = row_of(vault, info.id)
        assert row.master_version == 2 and row.wrapped_key != before[info.id].wrapped_key
        assert row.ciphertext == before[info.id].ciphertext
        event_id, output_id = await leased_output(vault, tenant, info.id)
        secret, _ = await vault.client.resolve(tenant, event_id, output_id, info.id, "output-1")
        assert secret.reveal() == value
    text = (vault.data_dir / master_keys.DEFAULT_FILE).read_text()
    assert "1:retired" in text, "a retired version's key is destroyed in the managed file"
    # a secret left under the retired version (a restored backup row) fails with a clear error
    old = before[infos[0].id]
    tamper(vault, infos[0].id, master_version=1, wrapped_key=old.wrapped_key)
    reply2 = await vault.client.verify(tenant, infos[0].id)
    assert reply2.error is not None and reply2.error.code == "master_key_retired"
    assert "master key version 1 is retired" in reply2.error.description


async def test_retiring_a_version_still_in_use_needs_force_and_then_fails_clearly(vault: Vault) -> None:
    tenant = ids("tn")
    info = await create(vault, tenant)
    await vault.client.rekey(add_version=True)  # version 2 active, the secret rewrapped
    tamper(vault, info.id, master_version=1, wrapped_key=b"\0" * 60)  # pretend it was never rewrapped
    with pytest.raises(VaultFailure) as err:
        await vault.client.rekey(add_version=False, retire=(1,))
    assert err.value.code == vm.CONFLICT and "still protect 1 secret" in err.value.description
    forced = await vault.client.rekey(add_version=False, retire=(1,), force=True)
    assert forced.retired == [1]
    event_id, output_id = await leased_output(vault, tenant, info.id)
    with pytest.raises(VaultFailure) as err:
        await vault.client.resolve(tenant, event_id, output_id, info.id, "output-1")
    assert err.value.code == "master_key_retired"


async def test_two_concurrent_updates_one_wins_one_conflicts_nothing_lost(vault: Vault) -> None:
    tenant = ids("tn")
    info = await create(vault, tenant)
    a, b = "live_1_FirstWriterAAAA01", "live_2_SecondWriterBB02"
    results = await asyncio.gather(
        vault.client.rotate(tenant, info.id, Secret(a), expected_version=info.version),
        vault.client.rotate(tenant, info.id, Secret(b), expected_version=info.version),
        return_exceptions=True,
    )
    won = [r for r in results if isinstance(r, vm.CredentialInfo)]
    lost = [r for r in results if isinstance(r, VaultFailure)]
    assert len(won) == 1 and len(lost) == 1, results
    assert lost[0].code == vm.CONFLICT
    assert won[0].version == 2
    winner = a if results[0] is won[0] else b
    event_id, output_id = await leased_output(vault, tenant, info.id)
    value, _ = await vault.client.resolve(tenant, event_id, output_id, info.id, "output-1")
    assert value.reveal() == winner, "the winner's value is what the vault holds"
    # the loser retries on the new version and wins in turn: nothing is lost
    loser = b if winner == a else a
    again = await vault.client.rotate(tenant, info.id, Secret(loser), expected_version=won[0].version)
    assert again.version == 3


async def test_a_stale_delete_conflicts(vault: Vault) -> None:
    tenant = ids("tn")
    info = await create(vault, tenant)
    await vault.client.rotate(tenant, info.id, Secret("live_3_NewValueCCCCCC03"))
    with pytest.raises(VaultFailure) as err:
        await vault.client.delete(tenant, info.id, expected_version=1)
    assert err.value.code == vm.CONFLICT
    await vault.client.delete(tenant, info.id, expected_version=2)
    with pytest.raises(VaultFailure) as err:
        await vault.client.describe(tenant, info.id)
    assert err.value.code == vm.NOT_FOUND


@pytest.mark.parametrize(
    ("kind", "value", "preset", "message"),
    [
        ("stream_key", "has space", "", "printable ASCII without spaces"),
        ("stream_key", "rtmp://host/app/key", "", "paste the key, not the whole URL"),
        ("stream_key", "abcd-efgh", "youtube", "not a youtube stream key"),
        ("stream_key", "notakey", "twitch", "not a twitch stream key"),
        ("srt_passphrase", "short", "", "10 to 79"),
        ("rtmp_userpass", "nopassword", "", "user:password"),
    ],
)
async def test_a_malformed_value_is_refused_and_nothing_is_stored(
    vault: Vault, kind: str, value: str, preset: str, message: str
) -> None:
    tenant = ids("tn")
    with pytest.raises(VaultFailure) as err:
        await vault.client.create(tenant, "bad", kind, Secret(value), preset=preset)
    assert err.value.code == vm.INVALID and message in err.value.description
    assert value not in err.value.description
    assert await vault.client.list(tenant) == []


async def test_no_plaintext_crosses_the_bus(vault: Vault, nc: Client) -> None:
    seen: list[bytes] = []

    async def capture(msg: Msg) -> None:
        seen.append(msg.subject.encode() + b" " + msg.data)

    sub = await nc.subscribe(">", cb=capture)
    try:
        tenant = ids("tn")
        info = await create(vault, tenant)
        await vault.client.rotate(tenant, info.id, Secret(KEY[::-1]))
        await vault.client.rotate(tenant, info.id, Secret(KEY))
        event_id, output_id = await leased_output(vault, tenant, info.id)
        value, _ = await vault.client.resolve(tenant, event_id, output_id, info.id, "output-1")
        assert value.reveal() == KEY
        await async_wait_until(lambda: any(b"fanout.vault.resolve" in m for m in seen), 5, "the capture")
    finally:
        await sub.unsubscribe()
    assert any(b"fanout.vault.create" in m for m in seen)
    for needle in (KEY, KEY[::-1], base64.b64encode(KEY.encode()).decode()):
        assert not any(needle.encode() in m for m in seen), "a value crossed the bus in the clear"


async def test_a_vault_with_keys_from_the_environment_cannot_add_a_version(
    nc: Client, tmp_path: Path, vault: Vault
) -> None:
    await vault.service.close()  # only the environment-keyed vault answers
    key = base64.b64encode(os.urandom(32)).decode()
    service, engine = await start_vault(nc, tmp_path / "env", {master_keys.ENV_KEY: f"1:{key}"})
    try:
        client = VaultClient(nc)
        tenant = ids("tn")
        info = await client.create(tenant, "k", "stream_key", Secret(KEY))
        with pytest.raises(VaultFailure) as err:
            await client.rekey()
        assert err.value.code == vm.BAD_REQUEST and "FANOUT_VAULT_MASTER_KEY" in err.value.description
        assert not (tmp_path / "env" / "var" / master_keys.DEFAULT_FILE).exists()
        assert (await client.describe(tenant, info.id)).master_version == 1
    finally:
        await service.close()
        engine.dispose()


async def test_leases_module_reports_the_holder(vault: Vault) -> None:
    output_id = ids("out")
    kv = await bus.lease_bucket(vault.nc)
    assert await leases.holder(kv, output_id) is None
    await LeaseKeeper(kv, "output-9").want(output_id)
    assert await leases.holder(kv, output_id) == "output-9"
