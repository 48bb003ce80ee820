"""Commands to workers: request/reply over NATS with a timeout and typed refusals.

A manual switch is one-shot, so it is a command to the event's router rather than desired state: it
acts once, now, and a restarted router must not replay it. (The lock, which must survive restarts, is
desired state.)
"""

from __future__ import annotations

import logging

import msgspec
from nats.aio.client import Client
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from shared import subjects
from shared.messages import RouterCommand, RouterReply, decode, encode

log = logging.getLogger(__name__)

TIMEOUT_S = 3.0


class RouterUnavailable(Exception):
    """No router answered for the event in time."""


class RouterCommands:
    def __init__(self, nc: Client, timeout: float = TIMEOUT_S) -> None:
        self._nc = nc
        self._timeout = timeout

    async def switch(self, tenant_id: str, event_id: str, input_id: str) -> RouterReply:
        command = RouterCommand(action="switch", input_id=input_id)
        try:
            msg = await self._nc.request(
                subjects.router_command(tenant_id, event_id), encode(command), timeout=self._timeout
            )
        except (NoRespondersError, NatsTimeoutError, TimeoutError) as exc:
            log.warning("router_command.unanswered", extra={"event_id": event_id, "error": repr(exc)})
            raise RouterUnavailable(event_id) from None
        try:
            return decode(msg.data, RouterReply)
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise RouterUnavailable(event_id) from None
