"""Credential verification: a format check per kind and platform preset (pure), and a live probe
(connect, publish, unpublish at once) against the destination (the shell).

Messages never repeat the value; a probe's error text from the peer is scrubbed of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl

from shared import netguard, urls
from shared.rtmp.client_session import ClientSession, ClientState, Published, Rejected
from shared.rtmp.errors import ProtocolError
from shared.secret import Secret

MAX_VALUE = 1024
_PRINTABLE = re.compile(r"^[\x21-\x7e]+$")
# What each platform hands out today; a key that does not look like one is a paste error.
PRESET_KEYS = {
    "youtube": (re.compile(r"^[A-Za-z0-9]{4}(-[A-Za-z0-9]{4}){3,4}$"), "xxxx-xxxx-xxxx-xxxx(-xxxx)"),
    "twitch": (re.compile(r"^live_[0-9]+_[A-Za-z0-9]{10,}$"), "live_<digits>_<letters and digits>"),
    "facebook": (
        re.compile(r"^(FB-)?[0-9]+(-[0-9]+-[A-Za-z0-9_-]+)?(\?[\x21-\x7e]*)?$"),
        "FB-<digits>-<digits>-<code>",
    ),
}


class FormatError(ValueError):
    pass


class ProbeFailed(Exception):
    """The destination refused the credential, or could not be reached to try it."""

    def __init__(self, message: str, rejected: bool) -> None:
        super().__init__(message)
        self.rejected = rejected


def check_format(kind: str, value: str, preset: str = "") -> None:
    if not value:
        raise FormatError("the value is empty")
    if len(value) > MAX_VALUE:
        raise FormatError(f"the value is too long (at most {MAX_VALUE} characters)")
    if kind == "stream_key":
        if not _PRINTABLE.match(value):
            raise FormatError("a stream key is printable ASCII without spaces (paste it exactly as given)")
        if "/" in value or "#" in value:
            raise FormatError("a stream key has no '/' or '#': paste the key, not the whole URL")
        if preset:
            pattern, shape = PRESET_KEYS.get(preset, (None, ""))
            if pattern is None:
                raise FormatError(f"unknown preset {preset!r} (one of {', '.join(PRESET_KEYS)})")
            if not pattern.match(value):
                raise FormatError(f"this is not a {preset} stream key (they look like {shape})")
    elif kind == "srt_passphrase":
        if not 10 <= len(value) <= 79 or not _PRINTABLE.match(value.replace(" ", "x")):
            raise FormatError("an SRT passphrase is 10 to 79 printable characters")
    elif kind == "rtmp_userpass":
        user, colon, password = value.partition(":")
        if not colon or not user or not password:
            raise FormatError("RTMP credentials are written user:password")
        if not _PRINTABLE.match(value) or "@" in user or "/" in value:
            raise FormatError("RTMP credentials are printable ASCII without spaces, '@' in the user or '/'")
    else:
        raise FormatError(f"unknown kind {kind!r}")


def probe_target(probe_url: str, key: Secret) -> urls.Destination:
    """The destination a probe publishes to: the probe URL (no key) with the key as the stream name."""
    base = probe_url.rstrip("/")
    try:
        return urls.parse_destination_url(f"{base}/{key.reveal()}")
    except ValueError as exc:
        raise ProbeFailed(f"probe_url: {exc}", rejected=False) from None


async def probe_rtmp(
    probe_url: str,
    key: Secret,
    allowlist: netguard.Allowlist,
    ca_file: str | None = None,
    timeout: float = 10.0,
) -> None:
    """Connect, publish with ``key``, unpublish at once. Raises ProbeFailed (``rejected`` when the
    destination answered no), DestinationRefused when the SSRF guard refuses the destination."""
    if not probe_url.lower().startswith(("rtmp://", "rtmps://")):
        raise ProbeFailed("a live probe works on rtmp:// and rtmps:// destinations only", rejected=False)
    target = probe_target(probe_url, key)
    secret = key.reveal()

    def scrub(text: str) -> str:
        return text.replace(secret, key.hint or "****") if secret else text

    tls: ssl.SSLContext | None = None
    if target.scheme == "rtmps":
        tls = ssl.create_default_context()
        if ca_file:
            tls.load_verify_locations(cafile=ca_file)
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout):
            pinned = await netguard.resolve(target.host, target.port, allowlist)
            reader, writer = await asyncio.open_connection(
                pinned.address, pinned.port, ssl=tls, server_hostname=target.host if tls else None
            )
            session = ClientSession(app=target.app, stream_name=target.stream_name, tc_url=target.tc_url)
            session.initiate()
            writer.write(session.data_to_send())
            while True:
                data = await reader.read(65536)
                if not data:
                    refused = session.state is ClientState.PUBLISH_SENT
                    raise ProbeFailed(
                        "the destination closed the connection in answer to publish (stream key refused)"
                        if refused
                        else f"the destination closed the connection while {session.state.value.replace('_', ' ')}",
                        rejected=refused,
                    )
                session.receive_data(data)
                writer.write(session.data_to_send())
                while (event := session.next_event()) is not None:
                    if isinstance(event, Rejected):
                        raise ProbeFailed(
                            scrub(f"the destination refused: {event.code} {event.description}"), True
                        )
                    if isinstance(event, Published):
                        session.unpublish()
                        writer.write(session.data_to_send())
                        await writer.drain()
                        return
    except netguard.DestinationRefused:
        raise
    except ProbeFailed:
        raise
    except TimeoutError:
        raise ProbeFailed(f"the destination did not answer within {timeout:g} s", rejected=False) from None
    except ssl.SSLError as exc:
        raise ProbeFailed(scrub(f"TLS failed: {exc.reason or exc}"), rejected=True) from None
    except (OSError, ProtocolError, EOFError) as exc:
        raise ProbeFailed(
            scrub(f"could not reach the destination: {type(exc).__name__}: {exc}"), False
        ) from None
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
