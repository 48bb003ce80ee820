"""The vault's client, for the orchestrator (create, rotate, delete, verify, describe, list, rekey) and
the output worker (resolve). Values go in and come out as ``Secret``; on the bus they are sealed.

Errors: ``VaultFailure(code, description)`` when the vault refused, ``VaultUnavailable`` when no vault
answered in time.
"""

from __future__ import annotations

from typing import TypeVar

import msgspec
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from nats.aio.client import Client
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from . import sealed_box, subjects
from . import vault_messages as vm
from .secret import Secret

R = TypeVar("R")

TIMEOUT_S = 5.0
PROBE_TIMEOUT_S = 20.0  # a request with a live probe waits for the destination too


class VaultFailure(Exception):
    def __init__(self, code: str, description: str) -> None:
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description


class VaultUnavailable(Exception):
    pass


class VaultClient:
    def __init__(self, nc: Client, timeout: float = TIMEOUT_S) -> None:
        self._nc = nc
        self._timeout = timeout
        self._transport: tuple[int, bytes] | None = None

    async def _request(self, op: str, message: msgspec.Struct, reply_type: type[R], timeout: float = 0) -> R:
        try:
            msg = await self._nc.request(
                subjects.vault_request(op), vm.encode(message), timeout=timeout or self._timeout
            )
        except (NoRespondersError, NatsTimeoutError, TimeoutError):
            raise VaultUnavailable(f"the vault did not answer ({op})") from None
        reply = vm.decode(msg.data, reply_type)
        error = getattr(reply, "error", None)
        if error is not None:
            raise VaultFailure(error.code, error.description)
        return reply

    async def _transport_key(self, refresh: bool = False) -> tuple[int, bytes]:
        if self._transport is None or refresh:
            reply = await self._request("transport_key", vm.TransportKeyRequest(), vm.TransportKeyReply)
            self._transport = (reply.version, reply.public_key)
        return self._transport

    async def _sealed_request(
        self,
        op: str,
        value: Secret,
        context: bytes,
        build: type[msgspec.Struct],
        reply_type: type[R],
        **fields: object,
    ) -> R:
        """Seal ``value`` to the vault's transport key and send; fetch the key again once if it changed."""
        for attempt in range(2):
            version, public = await self._transport_key(refresh=attempt > 0)
            ephemeral, box = sealed_box.seal(public, value.reveal().encode(), context)
            message = build(value=vm.SealedValue(version, ephemeral, box), **fields)
            try:
                timeout = PROBE_TIMEOUT_S if fields.get("probe_url") else 0
                return await self._request(op, message, reply_type, timeout)
            except VaultFailure as exc:
                if exc.code != vm.TRANSPORT_KEY or attempt:
                    raise
        raise AssertionError("unreachable")

    async def create(
        self, tenant_id: str, name: str, kind: str, value: Secret, preset: str = "", probe_url: str = ""
    ) -> vm.CredentialInfo:
        reply = await self._sealed_request(
            "create",
            value,
            vm.value_context("create", tenant_id),
            vm.CreateCredential,
            vm.CredentialReply,
            tenant_id=tenant_id,
            name=name,
            kind=kind,
            preset=preset,
            probe_url=probe_url,
        )
        assert reply.credential is not None
        return reply.credential

    async def rotate(
        self,
        tenant_id: str,
        credential_id: str,
        value: Secret,
        expected_version: int = 0,
        probe_url: str = "",
    ) -> vm.CredentialInfo:
        reply = await self._sealed_request(
            "rotate",
            value,
            vm.value_context("rotate", tenant_id, credential_id),
            vm.RotateCredential,
            vm.CredentialReply,
            tenant_id=tenant_id,
            credential_id=credential_id,
            expected_version=expected_version,
            probe_url=probe_url,
        )
        assert reply.credential is not None
        return reply.credential

    async def delete(self, tenant_id: str, credential_id: str, expected_version: int = 0) -> None:
        await self._request(
            "delete", vm.DeleteCredential(tenant_id, credential_id, expected_version), vm.CredentialReply
        )

    async def verify(self, tenant_id: str, credential_id: str, probe_url: str = "") -> vm.CredentialReply:
        """The credential after verification, with ``error`` set when it failed (not raised)."""
        try:
            msg = await self._nc.request(
                subjects.vault_request("verify"),
                vm.encode(vm.VerifyCredential(tenant_id, credential_id, probe_url)),
                timeout=PROBE_TIMEOUT_S if probe_url else self._timeout,
            )
        except (NoRespondersError, NatsTimeoutError, TimeoutError):
            raise VaultUnavailable("the vault did not answer (verify)") from None
        reply = vm.decode(msg.data, vm.CredentialReply)
        if reply.credential is None and reply.error is not None:
            raise VaultFailure(reply.error.code, reply.error.description)
        return reply

    async def describe(self, tenant_id: str, credential_id: str) -> vm.CredentialInfo:
        reply = await self._request(
            "describe", vm.DescribeCredential(tenant_id, credential_id), vm.CredentialReply
        )
        assert reply.credential is not None
        return reply.credential

    async def list(self, tenant_id: str) -> list[vm.CredentialInfo]:
        reply = await self._request("list", vm.ListCredentials(tenant_id), vm.CredentialListReply)
        return list(reply.credentials)

    async def rekey(
        self,
        retire_previous: bool = False,
        retire: tuple[int, ...] = (),
        add_version: bool = True,
        force: bool = False,
    ) -> vm.RekeyReply:
        message = vm.Rekey(
            retire_previous=retire_previous, retire=list(retire), add_version=add_version, force=force
        )
        return await self._request("rekey", message, vm.RekeyReply, timeout=60)

    async def resolve(
        self, tenant_id: str, event_id: str, output_id: str, credential_id: str, worker: str
    ) -> tuple[Secret, str]:
        """The credential's value (and kind) for the worker holding the output's lease."""
        return await self._resolve("resolve", tenant_id, event_id, credential_id, worker, output_id=output_id)

    async def resolve_input(
        self, tenant_id: str, event_id: str, input_id: str, credential_id: str, worker: str
    ) -> tuple[Secret, str]:
        """An SRT input's passphrase (and its kind) for ingest, which sets it on each caller's handshake."""
        return await self._resolve(
            "resolve_input", tenant_id, event_id, credential_id, worker, input_id=input_id
        )

    async def _resolve(
        self,
        op: str,
        tenant_id: str,
        event_id: str,
        credential_id: str,
        worker: str,
        output_id: str = "",
        input_id: str = "",
    ) -> tuple[Secret, str]:
        private = X25519PrivateKey.generate()
        request = vm.ResolveCredential(
            tenant_id=tenant_id,
            event_id=event_id,
            output_id=output_id,
            credential_id=credential_id,
            worker=worker,
            reply_key=sealed_box.public_bytes(private),
            input_id=input_id,
        )
        reply = await self._request(op, request, vm.ResolveReply)
        if reply.value is None:
            raise VaultFailure(vm.INTERNAL, "the vault's reply had no value")
        context = vm.value_context(op, tenant_id, credential_id, output_id or input_id)
        try:
            plain = sealed_box.open_box(private, reply.value.ephemeral, reply.value.box, context)
        except sealed_box.BoxError as exc:
            raise VaultFailure(vm.BAD_REQUEST, str(exc)) from None
        return Secret(plain.decode()), reply.kind
