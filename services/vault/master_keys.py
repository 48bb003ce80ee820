"""Where the vault's master keys come from: the environment, a file, or a generated file.

Format (environment or file): ``VERSION:BASE64`` entries, one per line or comma-separated; a single
bare base64 key is version 1; ``VERSION:retired`` is a tombstone (the key was destroyed). A key is 32
bytes (AES-256).

- ``FANOUT_VAULT_MASTER_KEY``: the keys themselves (e.g. from a secret manager). Read-only: to rotate,
  add a version there, restart the vaults, then ask for a rekey.
- ``FANOUT_VAULT_MASTER_KEY_FILE``: a file the operator manages. Read-only too.
- neither: ``<data dir>/vault/master.keys``, generated on first run with mode 0600 in a 0700 directory.
  The vault manages this one: a rekey appends a new version, retiring a version destroys its key.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .envelope import KEY_BYTES

ENV_KEY = "FANOUT_VAULT_MASTER_KEY"
ENV_FILE = "FANOUT_VAULT_MASTER_KEY_FILE"
DEFAULT_FILE = Path("vault") / "master.keys"
_HEADER = "# Fanout vault master keys: VERSION:BASE64 (32 bytes). Keep this file secret and backed up.\n"


class MasterKeyError(ValueError):
    pass


def parse(text: str, where: str) -> tuple[dict[int, bytes], set[int]]:
    """Keys by version and the versions tombstoned; errors name the entry, never a key."""
    keys: dict[int, bytes] = {}
    tombstones: set[int] = set()
    entries = [e.strip() for line in text.splitlines() for e in line.split(",")]
    entries = [e for e in entries if e and not e.startswith("#")]
    for n, entry in enumerate(entries, 1):
        version_text, colon, material = entry.partition(":")
        if not colon:
            if len(entries) != 1:
                raise MasterKeyError(f"{where}: entry {n} has no version (write VERSION:BASE64)")
            version_text, material = "1", entry
        if not version_text.isdigit() or int(version_text) < 1:
            raise MasterKeyError(f"{where}: entry {n} has a bad version (a number from 1)")
        version = int(version_text)
        if version in keys or version in tombstones:
            raise MasterKeyError(f"{where}: version {version} is given twice")
        if material == "retired":
            tombstones.add(version)
            continue
        try:
            key = base64.b64decode(material, validate=True)
        except (binascii.Error, ValueError):
            raise MasterKeyError(f"{where}: version {version} is not valid base64") from None
        if len(key) != KEY_BYTES:
            raise MasterKeyError(
                f"{where}: version {version} must decode to {KEY_BYTES} bytes, not {len(key)}"
            )
        keys[version] = key
    if not keys and not tombstones:
        raise MasterKeyError(f"{where}: no master key")
    return keys, tombstones


def render(keys: Mapping[int, bytes], tombstones: set[int]) -> str:
    lines = [_HEADER]
    for version in sorted(set(keys) | tombstones):
        material = "retired" if version not in keys else base64.b64encode(keys[version]).decode()
        lines.append(f"{version}:{material}\n")
    return "".join(lines)


@dataclass
class MasterKeys:
    keys: dict[int, bytes] = field(repr=False)
    tombstones: set[int]
    origin: str  # "env", "file" or "generated"
    path: Path | None = None  # the file, when the vault manages it

    @property
    def managed(self) -> bool:
        return self.origin == "generated" and self.path is not None

    def reload(self) -> None:
        if self.path is not None:
            self.keys, self.tombstones = parse(self.path.read_text(), str(self.path))

    def add_version(self) -> int:
        """A new random key one version above every known one, written to the managed file."""
        if not self.managed:
            raise MasterKeyError(
                f"master keys come from {ENV_KEY if self.origin == 'env' else ENV_FILE}: add a new "
                "version there, restart the vault, then rekey"
            )
        self.reload()
        version = max(set(self.keys) | self.tombstones) + 1
        keys = {**self.keys, version: os.urandom(KEY_BYTES)}
        _write_private(self._file(), render(keys, self.tombstones))
        self.keys = keys
        return version

    def destroy(self, versions: set[int]) -> None:
        """Replace retired versions' keys by tombstones (managed file only): they can never come back."""
        if not self.managed or not versions & set(self.keys):
            return
        self.reload()
        keys = {v: k for v, k in self.keys.items() if v not in versions}
        tombstones = self.tombstones | (versions & set(self.keys))
        _write_private(self._file(), render(keys, tombstones))
        self.keys, self.tombstones = keys, tombstones

    def _file(self) -> Path:
        assert self.path is not None
        return self.path


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically, readable by the owner only."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def load(data_dir: Path, environ: Mapping[str, str] | None = None) -> MasterKeys:
    env = os.environ if environ is None else environ
    if env.get(ENV_KEY):
        keys, tombstones = parse(env[ENV_KEY], ENV_KEY)
        return MasterKeys(keys, tombstones, "env")
    if env.get(ENV_FILE):
        path = Path(env[ENV_FILE])
        try:
            text = path.read_text()
        except OSError as exc:
            raise MasterKeyError(f"{ENV_FILE}: cannot read {path}: {exc.strerror}") from None
        keys, tombstones = parse(text, str(path))
        return MasterKeys(keys, tombstones, "file")
    path = data_dir / DEFAULT_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(path.parent, 0o700)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.new")
        _write_private(tmp, render({1: os.urandom(KEY_BYTES)}, set()))
        try:
            os.link(tmp, path)  # atomic create-if-absent: a whole file or none
        except FileExistsError:
            pass  # another vault instance made it first
        finally:
            tmp.unlink(missing_ok=True)
    keys, tombstones = parse(path.read_text(), str(path))
    return MasterKeys(keys, tombstones, "generated", path)
