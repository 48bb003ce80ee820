"""The vault service: credential requests on NATS (``subjects.vault_request(op)``, queue group ``vault``).

create / rotate / delete / verify / describe / list come from the orchestrator; resolve from the output
worker that holds the output's lease, at connect time; resolve_input from ingest for an SRT input's
passphrase (ingest sets it on every caller's handshake, so it holds it while the input exists). A resolve is
answered only when the output's requester holds its lease (an input has none: any ingest may take its
callers), the output or input (in desired state) references the credential, the secret opens, and the
audit record is stored; the value goes back sealed to the requester's one-time key. Every refusal is a
typed ``VaultError(code, description)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue
from sqlalchemy.engine import Engine

from shared import bus, leases, netguard, sealed_box, subjects
from shared import vault_messages as vm
from shared.ids import new_id
from shared.messages import EventSpec
from shared.messages import decode as decode_message
from shared.secret import Secret

from . import envelope, rekey, store, verify
from .audit import Auditor, AuditUnavailable, ensure_stream
from .master_keys import MasterKeyError, MasterKeys

log = logging.getLogger(__name__)

_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_NAME = 200
HINT_MIN_LENGTH = 12  # four characters of a shorter secret would say too much


class Refused(Exception):
    def __init__(self, code: str, description: str) -> None:
        super().__init__(description)
        self.code = code
        self.description = description


def _info(row: store.Row) -> vm.CredentialInfo:
    return vm.CredentialInfo(
        id=row.id,
        tenant_id=row.tenant_id,
        name=row.name,
        kind=row.kind,  # type: ignore[arg-type]
        hint=row.hint,
        version=row.version,
        preset=row.preset,
        status=row.status,  # type: ignore[arg-type]
        last_error=row.last_error,
        verified_at=row.verified_at,
        probed=row.probed,
        master_version=row.master_version,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def hint_of(value: Secret) -> str:
    """What the API may show of a value: ``…`` and its last four characters (none for a short one)."""
    text = value.reveal()
    return "…" + text[-4:] if len(text) >= HINT_MIN_LENGTH else "…"


def _check_id(value: str, what: str) -> str:
    if not _ID.match(value):
        raise Refused(vm.BAD_REQUEST, f"{what} is not a valid id")
    return value


class VaultService:
    def __init__(
        self,
        nc: Client,
        engine: Engine,
        master: MasterKeys,
        allowlist: netguard.Allowlist,
        ca_file: str | None = None,
        probe_timeout: float = 10.0,
    ) -> None:
        self._nc = nc
        self._engine = engine
        self._master = master
        self._allowlist = allowlist
        self._ca_file = ca_file
        self._probe_timeout = probe_timeout
        self._auditor = Auditor(nc.jetstream())
        self._transport: dict[int, X25519PrivateKey] = {}
        self._leases: KeyValue | None = None
        self._desired: KeyValue | None = None
        self._subs: list[Any] = []
        self._rekey_lock = asyncio.Lock()

    # --- setup ---

    async def start(self) -> None:
        await asyncio.to_thread(store.migrate, self._engine)
        await ensure_stream(self._nc.jetstream())
        self._leases = await bus.lease_bucket(self._nc)
        self._desired = await bus.desired_bucket(self._nc)
        await self.keyring()  # fails early on a master key problem
        handlers: dict[str, tuple[type, type, Callable[[Any], Awaitable[Any]]]] = {
            "transport_key": (vm.TransportKeyRequest, vm.TransportKeyReply, self.transport_key),
            "create": (vm.CreateCredential, vm.CredentialReply, self.create),
            "rotate": (vm.RotateCredential, vm.CredentialReply, self.rotate),
            "delete": (vm.DeleteCredential, vm.CredentialReply, self.delete),
            "verify": (vm.VerifyCredential, vm.CredentialReply, self.verify),
            "describe": (vm.DescribeCredential, vm.CredentialReply, self.describe),
            "list": (vm.ListCredentials, vm.CredentialListReply, self.list_credentials),
            "resolve": (vm.ResolveCredential, vm.ResolveReply, self.resolve),
            "resolve_input": (vm.ResolveCredential, vm.ResolveReply, self.resolve_input),
            "rekey": (vm.Rekey, vm.RekeyReply, self.rekey),
        }
        for op, (request_type, reply_type, fn) in handlers.items():
            sub = await self._nc.subscribe(
                subjects.vault_request(op),
                queue=subjects.VAULT_QUEUE,
                cb=self._handler(op, request_type, reply_type, fn),
            )
            self._subs.append(sub)
        log.info(
            "vault.ready",
            extra={"master_key_origin": self._master.origin, "master_versions": sorted(self._master.keys)},
        )

    async def close(self) -> None:
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self._subs.clear()

    def _handler(
        self, op: str, request_type: type, reply_type: type, fn: Callable[[Any], Awaitable[Any]]
    ) -> Callable[[Msg], Awaitable[None]]:
        async def handle(msg: Msg) -> None:
            try:
                try:
                    request: Any = vm.decode(msg.data, request_type)
                except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                    raise Refused(vm.BAD_REQUEST, f"malformed {op} request: {exc}") from None
                reply = await fn(request)
            except Refused as exc:
                reply = reply_type(error=vm.VaultError(exc.code, exc.description))
            except envelope.EnvelopeError as exc:
                reply = reply_type(error=vm.VaultError(exc.code, str(exc)))
            except Exception as exc:
                log.error("vault.request_failed", extra={"op": op, "error": type(exc).__name__})
                reply = reply_type(error=vm.VaultError(vm.INTERNAL, f"internal error ({type(exc).__name__})"))
            if msg.reply:
                with contextlib.suppress(Exception):
                    await msg.respond(vm.encode(reply))

        return handle

    # --- keys ---

    async def keyring(self) -> envelope.Keyring:
        retired = await asyncio.to_thread(store.retired_versions, self._engine)
        return envelope.Keyring(self._master.keys, frozenset(retired | self._master.tombstones))

    async def _keyring_with(self, version: int) -> envelope.Keyring:
        """The keyring, re-read from its file when it lacks ``version`` (another vault added it)."""
        if version not in self._master.keys and self._master.path is not None:
            with contextlib.suppress(OSError, MasterKeyError):
                self._master.reload()
        return await self.keyring()

    def _transport_private(self, keyring: envelope.Keyring, version: int) -> X25519PrivateKey:
        try:
            master = keyring.key(version)
        except envelope.EnvelopeError:
            raise Refused(
                vm.TRANSPORT_KEY, f"transport key version {version} is not in use: fetch it again"
            ) from None
        if version not in self._transport:
            self._transport[version] = sealed_box.private_from_seed(master, b"vault transport %d" % version)
        return self._transport[version]

    async def transport_key(self, request: vm.TransportKeyRequest) -> vm.TransportKeyReply:
        keyring = await self.keyring()
        private = self._transport_private(keyring, keyring.active)
        return vm.TransportKeyReply(version=keyring.active, public_key=sealed_box.public_bytes(private))

    async def _open_value(self, value: vm.SealedValue, context: bytes) -> Secret:
        keyring = await self._keyring_with(value.key_version)
        private = self._transport_private(keyring, value.key_version)
        try:
            plain = sealed_box.open_box(private, value.ephemeral, value.box, context)
            return Secret(plain.decode())
        except (sealed_box.BoxError, UnicodeDecodeError):
            raise Refused(
                vm.BAD_REQUEST, "the sealed value did not open (sealed for another request?)"
            ) from None

    # --- helpers ---

    async def _row(self, tenant_id: str, credential_id: str) -> store.Row:
        _check_id(tenant_id, "tenant_id")
        _check_id(credential_id, "credential_id")
        try:
            return await asyncio.to_thread(store.get, self._engine, tenant_id, credential_id)
        except store.NotFound:
            raise Refused(vm.NOT_FOUND, "credential not found") from None

    @staticmethod
    def _expect(row: store.Row, expected: int) -> None:
        if expected and row.version != expected:
            raise Refused(
                vm.CONFLICT, f"credential is at version {row.version}, not {expected}: read it again"
            )

    @staticmethod
    def _format(kind: str, value: Secret, preset: str) -> None:
        try:
            verify.check_format(kind, value.reveal(), preset)
        except verify.FormatError as exc:
            raise Refused(vm.INVALID, f"value: {exc}") from None

    async def _probe(self, kind: str, probe_url: str, value: Secret) -> None:
        if kind != "stream_key":
            raise Refused(vm.BAD_REQUEST, "probe_url: a live probe checks stream keys only")
        try:
            await verify.probe_rtmp(probe_url, value, self._allowlist, self._ca_file, self._probe_timeout)
        except netguard.DestinationRefused as exc:
            raise Refused(vm.DESTINATION_REFUSED, f"probe_url: {exc}") from None
        except verify.ProbeFailed as exc:
            code = vm.PROBE_FAILED if exc.rejected else vm.UNREACHABLE
            raise Refused(code, f"live probe failed: {exc}") from None

    async def _audit(
        self, op: str, tenant_id: str, credential_id: str, outcome: str, detail: str = ""
    ) -> None:
        record = vm.AuditRecord(
            op=op,
            tenant_id=tenant_id,
            credential_id=credential_id,
            outcome=outcome,
            requester="orchestrator",
            detail=detail,
        )
        await self._auditor.try_record(record)

    async def _update(self, row: store.Row, **values: Any) -> store.Row:
        try:
            return await asyncio.to_thread(store.update, self._engine, row, **values)
        except store.Conflict as exc:
            raise Refused(vm.CONFLICT, str(exc)) from None
        except store.NotFound:
            raise Refused(vm.NOT_FOUND, "credential not found") from None

    # --- operations ---

    async def create(self, request: vm.CreateCredential) -> vm.CredentialReply:
        tenant_id = _check_id(request.tenant_id, "tenant_id")
        name = request.name.strip()
        if not name or len(name) > MAX_NAME:
            raise Refused(vm.BAD_REQUEST, f"name must be 1 to {MAX_NAME} characters")
        value = await self._open_value(request.value, vm.value_context("create", tenant_id))
        self._format(request.kind, value, request.preset)
        status, probed = "valid", False
        if request.probe_url:
            await self._probe(request.kind, request.probe_url, value)
            probed = True
        credential_id = new_id("cred")
        keyring = await self.keyring()
        sealed = envelope.seal(keyring, tenant_id, credential_id, value.reveal().encode())
        now = time.time()
        row = store.Row(
            id=credential_id,
            tenant_id=tenant_id,
            name=name,
            kind=request.kind,
            preset=request.preset,
            hint=hint_of(value),
            master_version=sealed.master_version,
            wrapped_key=sealed.wrapped_key,
            ciphertext=sealed.ciphertext,
            version=1,
            status=status,
            last_error="",
            verified_at=now,
            probed=probed,
            created_at=now,
            updated_at=now,
        )
        await asyncio.to_thread(store.insert, self._engine, row)
        log.info(
            "vault.created",
            extra={"tenant_id": tenant_id, "credential_id": credential_id, "kind": request.kind},
        )
        await self._audit("create", tenant_id, credential_id, "ok")
        return vm.CredentialReply(credential=_info(row))

    async def rotate(self, request: vm.RotateCredential) -> vm.CredentialReply:
        row = await self._row(request.tenant_id, request.credential_id)
        self._expect(row, request.expected_version)
        value = await self._open_value(request.value, vm.value_context("rotate", row.tenant_id, row.id))
        self._format(row.kind, value, row.preset)
        probed = False
        if request.probe_url:
            await self._probe(row.kind, request.probe_url, value)
            probed = True
        sealed = envelope.seal(await self.keyring(), row.tenant_id, row.id, value.reveal().encode())
        updated = await self._update(
            row,
            master_version=sealed.master_version,
            wrapped_key=sealed.wrapped_key,
            ciphertext=sealed.ciphertext,
            hint=hint_of(value),
            status="valid",
            last_error="",
            probed=probed,
            verified_at=time.time(),
        )
        log.info(
            "vault.rotated",
            extra={"tenant_id": row.tenant_id, "credential_id": row.id, "version": updated.version},
        )
        await self._audit("rotate", row.tenant_id, row.id, "ok")
        return vm.CredentialReply(credential=_info(updated))

    async def delete(self, request: vm.DeleteCredential) -> vm.CredentialReply:
        row = await self._row(request.tenant_id, request.credential_id)
        self._expect(row, request.expected_version)
        try:
            await asyncio.to_thread(store.delete, self._engine, row)
        except store.Conflict as exc:
            raise Refused(vm.CONFLICT, str(exc)) from None
        log.info("vault.deleted", extra={"tenant_id": row.tenant_id, "credential_id": row.id})
        await self._audit("delete", row.tenant_id, row.id, "ok")
        return vm.CredentialReply(credential=_info(row))

    async def verify(self, request: vm.VerifyCredential) -> vm.CredentialReply:
        row = await self._row(request.tenant_id, request.credential_id)
        keyring = await self._keyring_with(row.master_version)
        error: vm.VaultError | None = None
        status, probed, last_error = row.status, row.probed, row.last_error
        try:
            try:
                value = Secret(envelope.open_sealed(keyring, row.tenant_id, row.id, row.sealed).decode())
            except envelope.EnvelopeError as exc:
                raise Refused(exc.code, str(exc)) from None
            self._format(row.kind, value, row.preset)
            if request.probe_url:
                await self._probe(row.kind, request.probe_url, value)
                status, probed, last_error = "valid", True, ""
            elif row.status == "invalid":
                error = vm.VaultError(vm.PROBE_FAILED, row.last_error or "the last live probe was refused")
            else:
                status, last_error = "valid", ""
        except Refused as exc:
            error = vm.VaultError(exc.code, exc.description)
            last_error = exc.description
            if exc.code not in (vm.UNREACHABLE, vm.DESTINATION_REFUSED, vm.BAD_REQUEST):  # not the network
                status = "invalid"
                probed = probed or exc.code == vm.PROBE_FAILED
        await asyncio.to_thread(store.set_status, self._engine, row, status, last_error, probed)
        await self._audit("verify", row.tenant_id, row.id, error.code if error else "ok")
        seen = await asyncio.to_thread(store.get, self._engine, row.tenant_id, row.id)
        return vm.CredentialReply(credential=_info(seen), error=error)

    async def describe(self, request: vm.DescribeCredential) -> vm.CredentialReply:
        return vm.CredentialReply(credential=_info(await self._row(request.tenant_id, request.credential_id)))

    async def list_credentials(self, request: vm.ListCredentials) -> vm.CredentialListReply:
        tenant_id = _check_id(request.tenant_id, "tenant_id")
        rows = await asyncio.to_thread(store.list_for, self._engine, tenant_id)
        return vm.CredentialListReply(credentials=[_info(r) for r in rows])

    async def resolve(self, request: vm.ResolveCredential) -> vm.ResolveReply:
        """An output's credential, for the worker holding its lease."""
        return await self._audited("resolve", request, self._output_context)

    async def resolve_input(self, request: vm.ResolveCredential) -> vm.ResolveReply:
        """An SRT input's passphrase, for ingest."""
        return await self._audited("resolve_input", request, self._input_context)

    async def _audited(
        self,
        op: str,
        request: vm.ResolveCredential,
        check: Callable[[vm.ResolveCredential, str, str], Awaitable[bytes]],
    ) -> vm.ResolveReply:
        """Answer a resolve that ``check`` allows (it returns the value's context), audited either way."""
        record = vm.AuditRecord(
            op=op,
            tenant_id=request.tenant_id if _ID.match(request.tenant_id) else "invalid",
            credential_id=request.credential_id[:64],
            requester=request.worker[:64],
            outcome="ok",
            output_id=request.output_id[:64],
            input_id=request.input_id[:64],
        )
        try:
            tenant_id = _check_id(request.tenant_id, "tenant_id")
            context = await check(request, tenant_id, _check_id(request.event_id, "event_id"))
            reply = await self._sealed(request, tenant_id, context)
        except (Refused, envelope.EnvelopeError) as exc:
            code = exc.code
            await self._auditor.try_record(
                msgspec.structs.replace(record, outcome=code, detail=str(exc)[:300])
            )
            log.warning(
                "vault.resolve_refused",
                extra={
                    "op": op,
                    "output_id": record.output_id,
                    "input_id": record.input_id,
                    "worker": record.requester,
                    "code": code,
                },
            )
            raise
        try:
            await self._auditor.record(record)
        except AuditUnavailable:
            log.error("vault.resolve_refused", extra={"op": op, "code": vm.AUDIT_UNAVAILABLE})
            raise Refused(
                vm.AUDIT_UNAVAILABLE, "the audit record could not be stored: resolve refused"
            ) from None
        log.info(
            "vault.resolved",
            extra={
                "op": op,
                "tenant_id": request.tenant_id,
                "credential_id": request.credential_id,
                "worker": request.worker,
            },
        )
        return reply

    async def _output_context(self, request: vm.ResolveCredential, tenant_id: str, event_id: str) -> bytes:
        if request.input_id:
            raise Refused(vm.BAD_REQUEST, "an input's passphrase is resolved with resolve_input")
        output_id = _check_id(request.output_id, "output_id")
        assert self._leases is not None
        holder = await leases.holder(self._leases, output_id)
        if holder is None or holder != request.worker:
            raise Refused(vm.NO_LEASE, "the requester does not hold this output's lease")
        spec = await self._event_spec(tenant_id, event_id)
        output = next((o for o in spec.outputs if o.id == output_id), None) if spec else None
        if output is None or getattr(output, "credential_id", "") != request.credential_id:
            raise Refused(vm.NOT_REFERENCED, "the output does not reference this credential")
        return vm.value_context("resolve", tenant_id, request.credential_id, output_id)

    async def _input_context(self, request: vm.ResolveCredential, tenant_id: str, event_id: str) -> bytes:
        if request.output_id:
            raise Refused(vm.BAD_REQUEST, "an output's credential is resolved with resolve")
        input_id = _check_id(request.input_id, "input_id")
        spec = await self._event_spec(tenant_id, event_id)
        found = next((i for i in spec.inputs if i.id == input_id), None) if spec else None
        if (
            found is None
            or found.protocol != "srt"
            or not request.credential_id
            or found.credential_id != request.credential_id
        ):
            raise Refused(vm.NOT_REFERENCED, "the input does not reference this credential")
        return vm.value_context("resolve_input", tenant_id, request.credential_id, input_id)

    async def _sealed(self, request: vm.ResolveCredential, tenant_id: str, context: bytes) -> vm.ResolveReply:
        row = await self._row(tenant_id, request.credential_id)
        keyring = await self._keyring_with(row.master_version)
        plain = envelope.open_sealed(keyring, tenant_id, row.id, row.sealed)
        try:
            ephemeral, box = sealed_box.seal(request.reply_key, plain, context)
        except sealed_box.BoxError as exc:
            raise Refused(vm.BAD_REQUEST, str(exc)) from None
        return vm.ResolveReply(value=vm.SealedValue(0, ephemeral, box), kind=row.kind)

    async def _event_spec(self, tenant_id: str, event_id: str) -> EventSpec | None:
        """The event as desired state has it, when it is the tenant's."""
        assert self._desired is not None
        try:
            entry = await self._desired.get(subjects.desired_event_key(event_id))
            spec = decode_message(entry.value or b"", EventSpec)
        except (KeyNotFoundError, msgspec.ValidationError, msgspec.DecodeError):
            return None
        return spec if spec.tenant_id == tenant_id else None

    async def rekey(self, request: vm.Rekey) -> vm.RekeyReply:
        async with self._rekey_lock:
            if request.add_version:
                try:
                    added = await asyncio.to_thread(self._master.add_version)
                except MasterKeyError as exc:
                    raise Refused(vm.BAD_REQUEST, str(exc)) from None
                log.info("vault.master_key_added", extra={"version": added})
            keyring = await self.keyring()
            rewrapped, failed = await rekey.rewrap_all(self._engine, keyring, self._rewrap_failed)
            in_use = await asyncio.to_thread(store.master_versions_in_use, self._engine)
            try:
                retire = rekey.to_retire(
                    keyring, set(request.retire), request.retire_previous, in_use, request.force
                )
            except rekey.StillInUse as exc:
                raise Refused(vm.CONFLICT, str(exc)) from None
            if retire:
                await asyncio.to_thread(store.retire, self._engine, retire)
                await asyncio.to_thread(self._master.destroy, retire)
                self._transport = {v: k for v, k in self._transport.items() if v not in retire}
                log.info("vault.master_keys_retired", extra={"versions": sorted(retire)})
            keyring = await self.keyring()
            detail = f"active {keyring.active}, rewrapped {rewrapped}, retired {sorted(retire)}"
            await self._audit("rekey", "system", "", "ok" if not failed else "partial", detail)
            return vm.RekeyReply(
                active_version=keyring.active,
                versions=keyring.versions,
                retired=sorted(keyring.retired),
                rewrapped=rewrapped,
                failed=failed,
            )

    async def _rewrap_failed(self, tenant_id: str, credential_id: str, exc: envelope.EnvelopeError) -> None:
        await self._audit("rekey", tenant_id, credential_id, exc.code, detail=str(exc)[:300])
