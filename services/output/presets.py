"""Platform presets: pick YouTube, Twitch or Facebook, paste the stream key, get a checked push URL.

``build`` makes the URL from a preset and a key (RTMPS wherever the platform offers it); ``check``
validates a URL a user typed against its platform's rules, whether the preset was named or recognised
from the host (a Facebook URL with ``rtmp://`` is refused: Facebook ingest is RTMPS only). YouTube
also has a backup ingest; ``build(..., backup=True)`` gives its URL for a paired output. Errors are
``ValueError``s whose messages never repeat the stream key.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared import urls

MAX_KEY_LENGTH = 1024


@dataclass(frozen=True)
class Preset:
    name: str
    title: str
    server: str  # primary ingest, without the key
    backup_server: str | None  # backup ingest (paired output), if the platform has one
    host_suffixes: tuple[str, ...]  # hosts that belong to the platform
    apps: tuple[str, ...]  # RTMP applications its ingest accepts
    schemes: tuple[str, ...]  # rtmp and/or rtmps
    dest_class: str = "B"

    def owns(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        return any(host == s.lstrip(".") or host.endswith(s) for s in self.host_suffixes)


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            name="youtube",
            title="YouTube Live",
            server="rtmps://a.rtmps.youtube.com:443/live2",
            backup_server="rtmps://b.rtmps.youtube.com:443/live2?backup=1",
            host_suffixes=(".youtube.com",),
            apps=("live2", "live2?backup=1"),
            schemes=("rtmps", "rtmp"),
        ),
        Preset(
            name="twitch",
            title="Twitch",
            server="rtmps://live.twitch.tv:443/app",
            backup_server=None,
            host_suffixes=(".twitch.tv", ".live-video.net"),
            apps=("app",),
            schemes=("rtmps", "rtmp"),
        ),
        Preset(
            name="facebook",
            title="Facebook Live",
            server="rtmps://live-api-s.facebook.com:443/rtmp",
            backup_server=None,
            host_suffixes=(".facebook.com",),
            apps=("rtmp",),
            schemes=("rtmps",),
        ),
    )
}


def get(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r} (one of {', '.join(PRESETS)})") from None


def check_key(key: str) -> None:
    """A stream key as a platform hands it out: printable ASCII, no spaces, no '/' or '#'."""
    if not key:
        raise ValueError("stream key is empty")
    if len(key) > MAX_KEY_LENGTH:
        raise ValueError(f"stream key is too long (at most {MAX_KEY_LENGTH} characters)")
    if not key.isascii() or any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in key):
        raise ValueError("stream key must be printable ASCII without spaces (paste it exactly as given)")
    if "/" in key or "#" in key:
        raise ValueError("stream key must not contain '/' or '#': paste the key, not the whole URL")


def build(name: str, key: str, backup: bool = False) -> str:
    """The push URL for ``key`` at the preset's primary (or backup) ingest, checked."""
    preset = get(name)
    check_key(key)
    server = preset.backup_server if backup else preset.server
    if server is None:
        raise ValueError(f"{preset.title} has no backup ingest")
    url = f"{server}/{key}"
    check(url, name)
    return url


def backup_url(name: str, url: str) -> str:
    """The backup-ingest URL carrying the same key as the primary ``url`` of preset ``name``."""
    return build(name, urls.parse_destination_url(url).stream_name, backup=True)


def detect(url: str) -> Preset | None:
    """The platform a URL points at, by its host; None for any other destination."""
    try:
        host = urls.parse_destination_url(url).host
    except ValueError:
        return None
    return next((p for p in PRESETS.values() if p.owns(host)), None)


def check(url: str, name: str | None = None) -> Preset | None:
    """Validate ``url`` as a push URL, and against its platform's rules when it has one.

    ``name`` says which platform the user picked; without it the platform is recognised by host.
    Returns the platform's preset (None for other destinations); raises ValueError saying what is wrong.
    """
    target = urls.parse_destination_url(url)
    preset = get(name) if name else detect(url)
    if preset is None:
        return None
    if not preset.owns(target.host):
        raise ValueError(
            f"host {target.host!r} is not a {preset.title} ingest (expected a host under "
            f"{' or '.join(s.lstrip('.') for s in preset.host_suffixes)})"
        )
    if target.scheme not in preset.schemes:
        only = " and ".join(f"{s}://" for s in preset.schemes)
        raise ValueError(
            f"{preset.title} needs {'RTMPS' if preset.schemes == ('rtmps',) else only}: "
            f"use {preset.server}/<stream key>"
        )
    if target.app not in preset.apps:
        raise ValueError(
            f"{preset.title} ingest application must be {' or '.join(repr(a) for a in preset.apps)}, "
            f"not {target.app!r} (like {preset.server}/<stream key>)"
        )
    check_key(target.stream_name)
    return preset
