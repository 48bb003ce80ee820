"""A self-signed certificate for loopback TLS peers, made once per test process with openssl."""

from __future__ import annotations

import atexit
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CertPair:
    """PEM files: `cert_file` is also the CA bundle a client must trust (FANOUT_TLS_CA_FILE)."""

    cert_file: Path
    key_file: Path


_lock = threading.Lock()
_cached: CertPair | None = None


def make_self_signed(directory: Path, common_name: str = "localhost") -> CertPair:
    """A fresh certificate valid for `localhost` and `127.0.0.1` (SAN), so clients can verify it by IP."""
    directory.mkdir(parents=True, exist_ok=True)
    pair = CertPair(cert_file=directory / "cert.pem", key_file=directory / "key.pem")
    cmd = [
        "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-subj", f"/CN={common_name}",
        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
        "-keyout", str(pair.key_file), "-out", str(pair.cert_file),
    ]  # fmt: skip
    done = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"openssl could not make a certificate: {done.stderr[-2000:]}")
    return pair


def session_cert() -> CertPair:
    """One certificate shared by every peer of this process (RSA key generation is not free)."""
    global _cached
    with _lock:
        if _cached is None:
            directory = Path(tempfile.mkdtemp(prefix="fanout-cert-"))
            atexit.register(shutil.rmtree, directory, ignore_errors=True)
            _cached = make_self_signed(directory)
        return _cached
