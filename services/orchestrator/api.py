"""The REST API: one route table, one middleware for auth and JSON errors, thin handlers.

Handlers decode the body into a DTO, call ``store`` in a thread (one transaction), publish the
event's desired state, and answer with a view. The route table also drives the OpenAPI document.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Literal, ParamSpec, TypeVar

import msgspec
from aiohttp import web
from sqlalchemy.engine import Engine

from services.output import policy as output_policy
from services.output.secure_connect import srt_url_without_passphrase
from services.transcode import profiles
from shared import messages, netguard, urls
from shared.config import Settings
from shared.ids import new_secret
from shared.messages import ProfileSpec
from shared.secret import Secret
from shared.vault_client import VaultClient, VaultFailure

from . import auth, credentials, openapi, store, validation, views
from .commands import RouterCommands, RouterUnavailable
from .desired import DesiredState, PublishFailed, failover_policy
from .errors import ApiError, conflict, forbidden, not_found, unauthorized, unavailable, validation_error
from .status import StatusCache

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Access = Literal["public", "tenant", "admin"]
P = ParamSpec("P")
R = TypeVar("R")

MAX_BODY_BYTES = 256 * 1024

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
}


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    access: Access
    status: int = 200
    body: type | None = None
    response: type | None = None
    errors: tuple[int, ...] = ()


_json = msgspec.json.Encoder()
PRINCIPAL: web.RequestKey[auth.Principal] = web.RequestKey("principal", auth.Principal)


def json_response(value: object, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=_json.encode(value), status=status, content_type="application/json", headers=headers
    )


def error_response(exc: ApiError, headers: dict[str, str] | None = None) -> web.Response:
    body = views.ErrorResponse(error=views.ErrorDetail(code=exc.code, message=exc.message, field=exc.field))
    return json_response(body, exc.status, headers)


class Api:
    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        desired: DesiredState,
        status: StatusCache,
        commands: RouterCommands | None = None,
        vault: VaultClient | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.desired = desired
        self.status = status
        self.commands = commands
        self.vault = vault
        self.allowlist = netguard.Allowlist.parse(settings.destination_allowlist)
        self.routes = self._routes()
        self._by_handler = {route.handler: route for route in self.routes}
        self._openapi: bytes | None = None

    def _routes(self) -> list[Route]:
        ev, inp, out = "/v1/events/{event_id}", "/v1/inputs/{input_id}", "/v1/outputs/{output_id}"
        tenants, events = "/v1/tenants", "/v1/events"
        creds, cred = "/v1/credentials", "/v1/credentials/{credential_id}"
        return [
            Route("GET", "/healthz", self.healthz, "Liveness", "public", response=views.Healthz),
            Route("GET", "/v1/openapi.json", self.openapi, "This OpenAPI document", "public"),
            # admin
            Route("GET", tenants, self.list_tenants, "List tenants", "admin", response=views.TenantList),
            Route(
                "POST", tenants, self.create_tenant, "Create a tenant", "admin",
                status=201, body=validation.TenantCreate, response=views.TenantView, errors=(409,),
            ),
            Route(
                "POST", tenants + "/{tenant_id}/keys", self.create_key, "Create a tenant API key (shown once)",
                "admin", status=201, body=validation.KeyCreate, response=views.ApiKeyCreated, errors=(404,),
            ),
            # events
            Route("GET", events, self.list_events, "List the tenant's events", "tenant", response=views.EventList),
            Route(
                "POST", events, self.create_event, "Create an event", "tenant",
                status=201, body=validation.EventCreate, response=views.EventView, errors=(503,),
            ),
            Route(
                "GET", ev, self.get_event, "An event with its inputs and outputs, live", "tenant",
                response=views.EventView, errors=(404,),
            ),
            Route(
                "DELETE", ev, self.delete_event, "Delete an event that is not live", "tenant",
                status=204, errors=(404, 409, 503),
            ),
            Route(
                "PATCH", ev, self.patch_event, "Change an event's name or failover policy", "tenant",
                body=validation.EventPatch, response=views.EventView, errors=(404, 503),
            ),
            Route(
                "POST", ev + "/start", self.start_event, "Go live: enabled outputs run", "tenant",
                response=views.EventView, errors=(404, 409, 503),
            ),
            Route(
                "POST", ev + "/switch", self.switch_input, "Put an input on air at its next keyframe",
                "tenant", status=202, body=validation.InputRef, response=views.SwitchRequested,
                errors=(404, 409, 503),
            ),
            Route(
                "POST", ev + "/lock", self.lock_input, "Lock the program to an input: no automatic switching",
                "tenant", body=validation.InputRef, response=views.EventView, errors=(404, 503),
            ),
            Route(
                "POST", ev + "/unlock", self.unlock_input, "Back to automatic failover", "tenant",
                response=views.EventView, errors=(404, 503),
            ),
            Route(
                "POST", ev + "/rollback", self.rollback_on,
                "Rollback mode: every output to rollback-720p30, only outputs at or above min_priority on, "
                "the program locked to the live input", "tenant",
                body=validation.RollbackOn, response=views.EventView, errors=(404, 503),
            ),
            Route(
                "DELETE", ev + "/rollback", self.rollback_off,
                "End rollback mode: profiles, enabled outputs and the lock as they were", "tenant",
                response=views.EventView, errors=(404, 503),
            ),
            Route(
                "POST", ev + "/stop", self.stop_event, "Stop the event", "tenant",
                response=views.EventView, errors=(404, 409, 503),
            ),
            # inputs
            Route(
                "POST", ev + "/inputs", self.create_input, "Add an input (its stream key is shown once)", "tenant",
                status=201, body=validation.InputCreate, response=views.InputCreated, errors=(404, 409, 503),
            ),
            Route("GET", inp, self.get_input, "An input, live", "tenant", response=views.InputView, errors=(404,)),
            Route("DELETE", inp, self.delete_input, "Delete an input", "tenant", status=204, errors=(404, 503)),
            # outputs
            Route(
                "POST", ev + "/outputs", self.create_output, "Add a destination", "tenant",
                status=201, body=validation.OutputCreate, response=views.OutputView, errors=(404, 503),
            ),
            Route(
                "GET", out, self.get_output, "An output, live", "tenant", response=views.OutputView, errors=(404,)
            ),
            Route("DELETE", out, self.delete_output, "Delete an output", "tenant", status=204, errors=(404, 503)),
            Route(
                "POST", out + "/start",
                self.start_output, "Enable the output (it runs while the event is live); re-enables an auto-disabled one",
                "tenant", response=views.OutputView, errors=(404, 503),
            ),
            Route(
                "PATCH", out, self.patch_output, "Change the output's encoding profile (live: new sequence headers)",
                "tenant", body=validation.OutputPatch, response=views.OutputView, errors=(404, 503),
            ),
            Route(
                "GET", "/v1/profiles", self.list_profiles, "Encoding profiles: the built-ins and the tenant's own",
                "tenant", response=views.ProfileList,
            ),
            Route(
                "POST", "/v1/profiles", self.create_profile, "Add an encoding profile (validated)", "tenant",
                status=201, body=validation.ProfileCreate, response=views.ProfileView, errors=(409,),
            ),
            Route(
                "GET", "/v1/presets", self.list_presets, "Platform presets for outputs (preset + stream_key)",
                "tenant", response=views.PresetList,
            ),
            Route(
                "POST", out + "/stop", self.stop_output, "Disable the output; it stays off when the event starts",
                "tenant", response=views.OutputView, errors=(404, 503),
            ),
            # credentials (write-only: the value is never shown again)
            Route(
                "GET", creds, self.list_credentials, "List the tenant's credentials (values never shown)", "tenant",
                response=views.CredentialList, errors=(503,),
            ),
            Route(
                "POST", creds, self.create_credential, "Store a destination credential in the vault", "tenant",
                status=201, body=validation.CredentialCreate, response=views.CredentialView, errors=(503,),
            ),
            Route(
                "GET", cred, self.get_credential, "A credential: its hint, never its value", "tenant",
                response=views.CredentialView, errors=(404, 503),
            ),
            Route(
                "POST", cred + "/rotate", self.rotate_credential, "Replace a credential's value", "tenant",
                body=validation.CredentialRotate, response=views.CredentialView, errors=(404, 409, 503),
            ),
            Route(
                "DELETE", cred, self.delete_credential, "Delete a credential no output uses", "tenant",
                status=204, errors=(404, 409, 503),
            ),
            Route(
                "POST", cred + "/verify", self.verify_credential,
                "Check a credential's format and, with probe_url, try it on the destination", "tenant",
                body=validation.CredentialVerify, response=views.CredentialView, errors=(404, 503),
            ),
            Route(
                "POST", "/v1/vault/rekey", self.rekey_vault,
                "Rotate the vault's master key: rewrap every secret, optionally retire older versions", "admin",
                body=validation.VaultRekey, response=views.RekeyView, errors=(409, 503),
            ),
        ]  # fmt: skip

    # --- plumbing ---

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            route = self._by_handler.get(request.match_info.handler)
            access: Access = (
                route.access if route else ("tenant" if request.path.startswith("/v1/") else "public")
            )
            if access != "public":
                principal = await self._authenticate(request)
                if access == "admin" and not principal.is_admin:
                    raise forbidden()
                request[PRINCIPAL] = principal
            if route is None and request.match_info.http_exception is not None:
                raise request.match_info.http_exception
            return await handler(request)
        except ApiError as exc:
            headers = {"WWW-Authenticate": 'Bearer realm="fanout"'} if exc.status == 401 else None
            return error_response(exc, headers)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            code = _CODES.get(exc.status, "bad_request" if exc.status < 500 else "internal")
            headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
            return error_response(ApiError(exc.status, code, exc.reason.lower()), headers)
        except Exception:
            log.exception("api.unhandled", extra={"method": request.method, "path": request.path})
            return error_response(ApiError(500, "internal", "internal error"))

    async def _authenticate(self, request: web.Request) -> auth.Principal:
        token = auth.bearer_token(request.headers.get("Authorization"))
        principal = await asyncio.to_thread(auth.lookup, self.engine, token) if token else None
        if principal is None:
            raise unauthorized()
        return principal

    @staticmethod
    def _tenant(request: web.Request) -> str:
        return request[PRINCIPAL].tenant_id

    @staticmethod
    async def _db(fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except store.NotFound as exc:
            raise not_found(str(exc)) from None
        except store.Conflict as exc:
            raise ApiError(409, "conflict", str(exc)) from None

    async def _publish(self, event_id: str) -> None:
        try:
            await self.desired.publish(event_id)
        except PublishFailed:
            raise unavailable(
                "the change is saved but desired state could not be published yet; it is retried"
            ) from None

    async def _event_view(self, tenant_id: str, event_id: str) -> views.EventView:
        detail = await self._db(store.get_event, self.engine, tenant_id, event_id)
        summary = views.event_summary(detail.event)
        return views.EventView(
            **{f: getattr(summary, f) for f in summary.__struct_fields__},
            inputs=[
                views.input_view(self.settings, i, self.status.input(i.event_id, i.id)) for i in detail.inputs
            ],
            outputs=[views.output_view(o, self.status.output(o.event_id, o.id)) for o in detail.outputs],
            failover=views.failover_view(failover_policy(detail.event.failover)),
            program=views.program_view(detail.event.locked_input, self.status.router(event_id)),
            rollback=views.rollback_view(store.rollback_of(detail.event)),
        )

    # --- public ---

    async def healthz(self, request: web.Request) -> web.Response:
        return json_response(views.Healthz(ok=True))

    async def openapi(self, request: web.Request) -> web.Response:
        if self._openapi is None:
            self._openapi = _json.encode(openapi.document(self.routes))
        return web.Response(body=self._openapi, content_type="application/json")

    # --- tenants and keys (admin) ---

    async def list_tenants(self, request: web.Request) -> web.Response:
        tenants = await self._db(store.list_tenants, self.engine)
        return json_response(views.TenantList(tenants=[views.tenant_view(t) for t in tenants]))

    async def create_tenant(self, request: web.Request) -> web.Response:
        body = validation.decode(await request.read(), validation.TenantCreate)
        tenant = await self._db(store.create_tenant, self.engine, body.name.strip())
        log.info("tenant.created", extra={"tenant_id": tenant.id})
        return json_response(views.tenant_view(tenant), 201)

    async def create_key(self, request: web.Request) -> web.Response:
        validation.decode(await request.read(), validation.KeyCreate, allow_empty=True)
        issued = await self._db(auth.issue_key, self.engine, request.match_info["tenant_id"])
        if issued is None:
            raise not_found("tenant")
        log.info("api_key.created", extra={"tenant_id": issued.tenant_id, "key_id": issued.id})
        return json_response(views.api_key_created(issued), 201)

    # --- events ---

    async def list_events(self, request: web.Request) -> web.Response:
        events = await self._db(store.list_events, self.engine, self._tenant(request))
        return json_response(views.EventList(events=[views.event_summary(e) for e in events]))

    async def create_event(self, request: web.Request) -> web.Response:
        body = validation.decode(await request.read(), validation.EventCreate)
        tenant_id = self._tenant(request)
        policy = "" if body.failover is None else messages.encode(body.failover.policy()).decode()
        event = await self._db(store.create_event, self.engine, tenant_id, body.name.strip(), policy)
        log.info("event.created", extra={"tenant_id": tenant_id, "event_id": event.id})
        await self._publish(event.id)
        return json_response(await self._event_view(tenant_id, event.id), 201)

    async def get_event(self, request: web.Request) -> web.Response:
        return json_response(await self._event_view(self._tenant(request), request.match_info["event_id"]))

    async def delete_event(self, request: web.Request) -> web.Response:
        tenant_id, event_id = self._tenant(request), request.match_info["event_id"]
        detail = await self._db(store.get_event, self.engine, tenant_id, event_id)
        await self._db(store.delete_event, self.engine, tenant_id, event_id)
        log.info("event.deleted", extra={"tenant_id": tenant_id, "event_id": event_id})
        await self._publish(event_id)
        await self._forget_passphrases(detail.inputs)
        return web.Response(status=204)

    async def patch_event(self, request: web.Request) -> web.Response:
        body = validation.decode(await request.read(), validation.EventPatch)
        tenant_id, event_id = self._tenant(request), request.match_info["event_id"]
        name = None if body.name is msgspec.UNSET else body.name.strip()
        policy = None
        if body.failover is not msgspec.UNSET:
            current = await self._db(store.get_event, self.engine, tenant_id, event_id)
            changed = body.failover.apply(failover_policy(current.event.failover))
            policy = messages.encode(changed).decode()
        event = await self._db(store.update_event, self.engine, tenant_id, event_id, name, policy)
        log.info(
            "event.updated", extra={"tenant_id": tenant_id, "event_id": event_id, "revision": event.revision}
        )
        await self._publish(event_id)
        return json_response(await self._event_view(tenant_id, event_id))

    async def start_event(self, request: web.Request) -> web.Response:
        return await self._set_event_state(request, live=True)

    async def stop_event(self, request: web.Request) -> web.Response:
        return await self._set_event_state(request, live=False)

    async def _set_event_state(self, request: web.Request, live: bool) -> web.Response:
        tenant_id, event_id = self._tenant(request), request.match_info["event_id"]
        event = await self._db(store.set_event_state, self.engine, tenant_id, event_id, live)
        log.info("event.state", extra={"tenant_id": tenant_id, "event_id": event_id, "new": event.state})
        await self._publish(event_id)
        return json_response(await self._event_view(tenant_id, event_id))

    # --- failover controls ---

    async def switch_input(self, request: web.Request) -> web.Response:
        body = validation.decode(await request.read(), validation.InputRef)
        tenant_id, event_id = self._tenant(request), request.match_info["event_id"]
        detail = await self._db(store.get_event, self.engine, tenant_id, event_id)
        if body.input_id not in {i.id for i in detail.inputs}:
            raise not_found("input")
        if detail.event.state != "live":
            raise conflict(f"event is not live (state {detail.event.state!r})")
        if self.commands is None:
            raise unavailable("router commands are not available")
        try:
            reply = await self.commands.switch(tenant_id, event_id, body.input_id)
        except RouterUnavailable:
            raise unavailable("the event's router did not answer; try again") from None
        extra = {"tenant_id": tenant_id, "event_id": event_id, "input_id": body.input_id, "ok": reply.ok}
        log.info("event.switch_requested", extra=extra)
        if not reply.ok:
            raise conflict(reply.message or reply.code)
        return json_response(
            views.SwitchRequested(event_id=event_id, input_id=body.input_id, message=reply.message), 202
        )

    async def rollback_on(self, request: web.Request) -> web.Response:
        body = validation.decode(await request.read(), validation.RollbackOn, allow_empty=True)
        tenant_id, event_id = self._tenant(request), request.match_info["event_id"]
        detail = await self._db(store.get_event, self.engine, tenant_id, event_id)
        router = self.status.router(event_id)
        live = router.live_input if router is not None else ""
        live = live if any(i.id == live for i in detail.inputs) else ""  # not the slate
        priorities = {name: p.priority for name, p in output_policy.CLASSES.items()}
        await self._db(
            store.set_rollback, self.engine, tenant_id, event_id, True, body.min_priority, live, priorities
        )
        extra = {
            "tenant_id": tenant_id,
            "event_id": event_id,
            "min_priority": body.min_priority,
            "lock": live,
        }
        log.info("event.rollback_on", extra=extra)
        await self._publish(event_id)
        return json_response(await self._event_view(tenant_id, event_id))

    async def rollback_off(self, request: web.Request) -> web.Response:
        tenant_id, event_id = self._tenant(request), request.match_info["event_id"]
        await self._db(store.set_rollback, self.engine, tenant_id, event_id, False)
        log.info("event.rollback_off", extra={"tenant_id": tenant_id, "event_id": event_id})
        await self._publish(event_id)
        return json_response(await self._event_view(tenant_id, event_id))

    async def lock_input(self, request: web.Request) -> web.Response:
        body = validation.decode(await request.read(), validation.InputRef)
        return await self._set_lock(request, body.input_id)

    async def unlock_input(self, request: web.Request) -> web.Response:
        validation.decode(await request.read(), validation.KeyCreate, allow_empty=True)
        return await self._set_lock(request, "")

    async def _set_lock(self, request: web.Request, input_id: str) -> web.Response:
        tenant_id, event_id = self._tenant(request), request.match_info["event_id"]
        await self._db(store.set_locked_input, self.engine, tenant_id, event_id, input_id)
        log.info("event.lock", extra={"tenant_id": tenant_id, "event_id": event_id, "locked_input": input_id})
        await self._publish(event_id)
        return json_response(await self._event_view(tenant_id, event_id))

    # --- inputs ---

    async def create_input(self, request: web.Request) -> web.Response:
        body = validation.decode(await request.read(), validation.InputCreate)
        validation.check_protocol(body)
        tenant_id, event_id = self._tenant(request), request.match_info["event_id"]
        await self._db(store.get_event, self.engine, tenant_id, event_id)  # 404 before the vault is asked
        stream_key = new_secret()
        passphrase = None
        if body.passphrase:  # the vault keeps it; the row and desired state name the credential
            passphrase = await credentials.store_input_passphrase(
                self.vault, tenant_id, body.role, event_id, body.passphrase
            )
        try:
            row = await self._db(
                store.create_input, self.engine, tenant_id, event_id, body.role, body.protocol,
                auth.hash_secret(stream_key), stream_key[-4:],
                (body.pbkeylen or 16) if body.passphrase else 0, body.latency_ms or 120,
                passphrase.id if passphrase else None, passphrase.version if passphrase else 0,
                urls.mask_secret(body.passphrase or ""),
            )  # fmt: skip
        except BaseException:
            if passphrase is not None and self.vault is not None:
                with contextlib.suppress(Exception):
                    await self.vault.delete(tenant_id, passphrase.id)
            raise
        log.info("input.created", extra={"tenant_id": tenant_id, "event_id": event_id, "input_id": row.id})
        await self._publish(event_id)
        return json_response(views.input_created(self.settings, row, stream_key), 201)

    async def get_input(self, request: web.Request) -> web.Response:
        row = await self._db(
            store.get_input, self.engine, self._tenant(request), request.match_info["input_id"]
        )
        return json_response(views.input_view(self.settings, row, self.status.input(row.event_id, row.id)))

    async def delete_input(self, request: web.Request) -> web.Response:
        tenant_id, input_id = self._tenant(request), request.match_info["input_id"]
        row = await self._db(store.get_input, self.engine, tenant_id, input_id)
        event_id = await self._db(store.delete_input, self.engine, tenant_id, input_id)
        self.status.forget(input_id)
        log.info("input.deleted", extra={"tenant_id": tenant_id, "event_id": event_id, "input_id": input_id})
        await self._publish(event_id)
        await self._forget_passphrases([row])
        return web.Response(status=204)

    async def _forget_passphrases(self, inputs: Iterable[store.Input]) -> None:
        """Deleted inputs' passphrases leave the vault too, unless another input was given the same
        credential meanwhile; best effort (a leftover credential is sealed and listed, never used)."""
        for row in inputs:
            if not row.credential_id or self.vault is None:
                continue
            if await self._db(store.inputs_with_credential, self.engine, row.tenant_id, row.credential_id):
                continue
            try:
                await self.vault.delete(row.tenant_id, row.credential_id)
            except Exception as exc:
                log.warning(
                    "input.passphrase_not_deleted",
                    extra={
                        "input_id": row.id,
                        "credential_id": row.credential_id,
                        "error": type(exc).__name__,
                    },
                )

    # --- outputs ---

    async def create_output(self, request: web.Request) -> web.Response:
        body = validation.decode(await request.read(), validation.OutputCreate)
        tenant_id, event_id = self._tenant(request), request.match_info["event_id"]
        await self._db(store.get_event, self.engine, tenant_id, event_id)  # 404 before the vault is asked
        await self._check_profile(tenant_id, body.profile)
        if body.credential_id is not None:
            target = credentials.keyless_destination(body)
        else:
            target = validation.check_destination(body)
        for url in filter(None, (target.url, target.backup_url)):
            await credentials.guard(url, self.allowlist)
        url, backup_url, key_hint, split = target.url, target.backup_url, None, None
        credential_id = body.credential_id
        if credential_id is not None:
            probe = url if body.verify and credentials.is_rtmp(url) else ""
            await credentials.check_reference(
                self.vault, tenant_id, credential_id, probe, credentials.kind_for(url)
            )
        elif credentials.is_rtmp(url):  # the key goes to the vault; the row keeps the URL without it
            url, key = credentials.split_key(url)
            field = "stream_key" if body.stream_key is not None else "url"
            split = await credentials.store_key(
                self.vault,
                tenant_id,
                body.name.strip(),
                key,
                target.preset,
                url if body.verify else "",
                field,
            )
            credential_id, key_hint = split.id, split.hint.replace("…", "****")
            backup_url = credentials.split_key(backup_url)[0] if backup_url else None
        elif credentials.is_srt(url):  # an SRT passphrase goes to the vault; the URL keeps the other options
            keyless, passphrase = srt_url_without_passphrase(url)
            if passphrase is not None:
                split = await credentials.store_key(
                    self.vault, tenant_id, body.name.strip(), passphrase, None, "", "url", "srt_passphrase"
                )
                url, credential_id, key_hint = keyless, split.id, "****"
        try:
            row = await self._db(
                store.create_output,
                self.engine,
                tenant_id,
                event_id,
                body.name.strip(),
                url,
                body.dest_class,
                target.preset,
                backup_url,
                credential_id,
                key_hint,
                body.profile,
            )
        except BaseException:
            if split is not None and self.vault is not None:
                with contextlib.suppress(Exception):
                    await self.vault.delete(tenant_id, split.id)
            raise
        log.info(
            "output.created",
            extra={
                "tenant_id": tenant_id,
                "event_id": event_id,
                "output_id": row.id,
                "url": urls.sanitize(row.url),
            },
        )
        await self._publish(event_id)
        return json_response(views.output_view(row, None), 201)

    async def get_output(self, request: web.Request) -> web.Response:
        row = await self._db(
            store.get_output, self.engine, self._tenant(request), request.match_info["output_id"]
        )
        return json_response(views.output_view(row, self.status.output(row.event_id, row.id)))

    async def delete_output(self, request: web.Request) -> web.Response:
        tenant_id, output_id = self._tenant(request), request.match_info["output_id"]
        row = await self._db(store.get_output, self.engine, tenant_id, output_id)
        event_id = await self._db(store.delete_output, self.engine, tenant_id, output_id)
        self.status.forget(output_id)
        log.info(
            "output.deleted", extra={"tenant_id": tenant_id, "event_id": event_id, "output_id": output_id}
        )
        await self._publish(event_id)
        if row.credential_id and row.key_hint:  # a key split off this output's URL goes with it
            users = await self._db(store.outputs_with_credential, self.engine, tenant_id, row.credential_id)
            if not users and self.vault is not None:
                with contextlib.suppress(Exception):
                    await self.vault.delete(tenant_id, row.credential_id)
        return web.Response(status=204)

    async def _check_profile(self, tenant_id: str, name: str) -> None:
        if await self._db(store.get_profile, self.engine, tenant_id, name) is None:
            raise validation_error(f"profile: no profile named {name!r} (GET /v1/profiles)", "profile")

    async def patch_output(self, request: web.Request) -> web.Response:
        body = validation.decode(await request.read(), validation.OutputPatch)
        tenant_id, output_id = self._tenant(request), request.match_info["output_id"]
        await self._db(store.get_output, self.engine, tenant_id, output_id)  # 404 first
        await self._check_profile(tenant_id, body.profile)
        row = await self._db(store.set_output_profile, self.engine, tenant_id, output_id, body.profile)
        log.info(
            "output.profile", extra={"tenant_id": tenant_id, "output_id": output_id, "profile": row.profile}
        )
        await self._publish(row.event_id)
        return json_response(views.output_view(row, self.status.output(row.event_id, row.id)))

    async def list_profiles(self, request: web.Request) -> web.Response:
        found = await self._db(store.list_profiles, self.engine, self._tenant(request))
        return json_response(
            views.ProfileList(profiles=[views.profile_view(p, profiles.is_builtin(p.name)) for p in found])
        )

    async def create_profile(self, request: web.Request) -> web.Response:
        body = validation.decode(await request.read(), validation.ProfileCreate)
        spec = ProfileSpec(**msgspec.structs.asdict(body))
        try:
            profiles.validate(spec)
        except profiles.ProfileError as exc:
            raise validation_error(str(exc), exc.field) from None
        created = await self._db(store.create_profile, self.engine, self._tenant(request), spec)
        log.info("profile.created", extra={"tenant_id": self._tenant(request), "profile": created.name})
        return json_response(views.profile_view(created, False), 201)

    async def list_presets(self, request: web.Request) -> web.Response:
        return json_response(views.preset_list())

    async def start_output(self, request: web.Request) -> web.Response:
        return await self._set_output_enabled(request, enabled=True)

    async def stop_output(self, request: web.Request) -> web.Response:
        return await self._set_output_enabled(request, enabled=False)

    async def _set_output_enabled(self, request: web.Request, enabled: bool) -> web.Response:
        tenant_id, output_id = self._tenant(request), request.match_info["output_id"]
        if enabled:
            current = await self._db(store.get_output, self.engine, tenant_id, output_id)
            if current.credential_id:  # a credential that failed verification must not go live
                kind = credentials.kind_for(current.url)
                await credentials.check_reference(self.vault, tenant_id, current.credential_id, kind=kind)
        row = await self._db(store.set_output_enabled, self.engine, tenant_id, output_id, enabled)
        log.info("output.enabled", extra={"tenant_id": tenant_id, "output_id": output_id, "enabled": enabled})
        await self._publish(row.event_id)
        return json_response(views.output_view(row, self.status.output(row.event_id, row.id)))

    # --- credentials ---

    async def list_credentials(self, request: web.Request) -> web.Response:
        found = await credentials.call(credentials.require(self.vault).list(self._tenant(request)))
        return json_response(views.CredentialList(credentials=[views.credential_view(c) for c in found]))

    async def create_credential(self, request: web.Request) -> web.Response:
        body = validation.decode(await request.read(), validation.CredentialCreate)
        tenant_id = self._tenant(request)
        if body.probe_url:
            await credentials.guard(body.probe_url, self.allowlist, "probe_url")
        vault = credentials.require(self.vault)
        value = Secret(body.value)
        info = await credentials.call(
            vault.create(
                tenant_id, body.name.strip(), body.kind, value, body.preset or "", body.probe_url or ""
            )
        )
        log.info(
            "credential.created", extra={"tenant_id": tenant_id, "credential_id": info.id, "kind": info.kind}
        )
        return json_response(views.credential_view(info), 201)

    async def get_credential(self, request: web.Request) -> web.Response:
        vault = credentials.require(self.vault)
        info = await credentials.call(
            vault.describe(self._tenant(request), request.match_info["credential_id"])
        )
        return json_response(views.credential_view(info))

    async def rotate_credential(self, request: web.Request) -> web.Response:
        body = validation.decode(await request.read(), validation.CredentialRotate)
        tenant_id, credential_id = self._tenant(request), request.match_info["credential_id"]
        if body.probe_url:
            await credentials.guard(body.probe_url, self.allowlist, "probe_url")
        vault = credentials.require(self.vault)
        info = await credentials.call(
            vault.rotate(
                tenant_id, credential_id, Secret(body.value), body.version or 0, body.probe_url or ""
            )
        )
        log.info(
            "credential.rotated",
            extra={"tenant_id": tenant_id, "credential_id": credential_id, "version": info.version},
        )
        hint = info.hint.replace("…", "****")
        await self._db(store.set_key_hint, self.engine, tenant_id, credential_id, hint)
        events = await self._db(
            store.rotated_input_credential, self.engine, tenant_id, credential_id, info.version, hint
        )
        for event_id in events:  # ingest resolves the new passphrase: the next callers need it
            await self._publish(event_id)
        return json_response(views.credential_view(info))

    async def delete_credential(self, request: web.Request) -> web.Response:
        tenant_id, credential_id = self._tenant(request), request.match_info["credential_id"]
        vault = credentials.require(self.vault)
        info = await credentials.call(vault.describe(tenant_id, credential_id))
        users = await self._db(store.outputs_with_credential, self.engine, tenant_id, credential_id)
        if users:
            raise conflict(
                f"credential is used by {len(users)} output(s) ({users[0].id}): delete or change them first"
            )
        inputs = await self._db(store.inputs_with_credential, self.engine, tenant_id, credential_id)
        if inputs:
            raise conflict(f"credential is the passphrase of input {inputs[0].id}: delete the input first")
        await credentials.call(vault.delete(tenant_id, credential_id, info.version))
        log.info("credential.deleted", extra={"tenant_id": tenant_id, "credential_id": credential_id})
        return web.Response(status=204)

    async def verify_credential(self, request: web.Request) -> web.Response:
        body = validation.decode(await request.read(), validation.CredentialVerify, allow_empty=True)
        tenant_id, credential_id = self._tenant(request), request.match_info["credential_id"]
        if body.probe_url:
            await credentials.guard(body.probe_url, self.allowlist, "probe_url")
        vault = credentials.require(self.vault)
        reply = await credentials.call(vault.verify(tenant_id, credential_id, body.probe_url or ""))
        assert reply.credential is not None
        extra = {"tenant_id": tenant_id, "credential_id": credential_id, "status": reply.credential.status}
        log.info("credential.verified", extra=extra)
        if reply.error is not None:
            failed = credentials.api_error(VaultFailure(reply.error.code, reply.error.description))
            if failed.status != 422 or failed.code != "verification_failed":
                failed = ApiError(422, "verification_failed", reply.error.description, failed.field)
            raise failed
        return json_response(views.credential_view(reply.credential))

    async def rekey_vault(self, request: web.Request) -> web.Response:
        body = validation.decode(await request.read(), validation.VaultRekey, allow_empty=True)
        vault = credentials.require(self.vault)
        reply = await credentials.call(
            vault.rekey(body.retire_previous, tuple(body.retire), body.add_version)
        )
        log.info(
            "vault.rekeyed", extra={"active_version": reply.active_version, "rewrapped": reply.rewrapped}
        )
        return json_response(
            views.RekeyView(
                active_version=reply.active_version,
                versions=list(reply.versions),
                retired=list(reply.retired),
                rewrapped=reply.rewrapped,
                failed=list(reply.failed),
            )
        )


API: web.AppKey[Api] = web.AppKey("api")


def create_app(
    settings: Settings,
    engine: Engine,
    desired: DesiredState,
    status: StatusCache,
    commands: RouterCommands | None = None,
    vault: VaultClient | None = None,
) -> web.Application:
    api = Api(settings, engine, desired, status, commands, vault)
    app = web.Application(middlewares=[api.middleware], client_max_size=MAX_BODY_BYTES)
    for route in api.routes:
        app.router.add_route(route.method, route.path, route.handler)
    app[API] = api
    return app
