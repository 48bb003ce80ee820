"""ffmpeg as a real publisher (RTMP, RTMPS, SRT) and a real receiver, each in its own process group.

ffmpeg 5.1 (Debian 12) publishes to `rtmps://` without any TLS option: its TLS client does not verify
the peer unless `-tls_verify 1` is given, so a self-signed destination is fine.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from .procs import stop


class FfmpegProcess(subprocess.Popen[bytes]):
    """A Popen whose stderr goes to `log_path`, so a failure can say what ffmpeg said."""

    def __init__(self, args: Sequence[str], log_path: Path | None) -> None:
        if log_path is None:
            fd, name = tempfile.mkstemp(prefix="fanout-ffmpeg-", suffix=".log")
            os.close(fd)
            log_path = Path(name)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path = log_path
        self.cmdline = shlex.join(args)
        with open(log_path, "ab") as log:
            super().__init__(
                list(args),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                start_new_session=True,  # so stop() can signal the whole group
            )

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""


def container_for(url: str) -> str:
    return "mpegts" if url.startswith(("srt://", "udp://", "tcp://")) else "flv"


def publish_args(
    url: str,
    *,
    duration: float,
    size: str = "1280x720",
    rate: int = 30,
    bitrate: str = "3M",
    gop: int = 60,
    tone_hz: int = 1000,
    pattern: str = "testsrc2",
    realtime: bool = True,
    extra_args: Sequence[str] = (),
    fmt: str | None = None,
) -> list[str]:
    """The TESTING.md publisher: a moving test pattern and a sine tone, H.264 + AAC, `-f flv` for RTMP(S)."""
    fmt = fmt or container_for(url)
    args = ["ffmpeg", "-hide_banner", "-nostdin", "-nostats", "-loglevel", "info"]
    if realtime:
        args.append("-re")
    args += [
        "-f", "lavfi", "-i", f"{pattern}=size={size}:rate={rate}",
        "-f", "lavfi", "-i", f"sine=frequency={tone_hz}:sample_rate=48000",
        "-t", f"{duration:g}",
        "-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency",
        "-b:v", bitrate, "-g", str(gop), "-pix_fmt", "yuv420p",
        "-c:a", "aac", "-b:a", "128k",
    ]  # fmt: skip
    args += list(extra_args)
    if fmt == "flv":
        # The output is a socket: without this ffmpeg warns it cannot seek back to patch the header.
        args += ["-flvflags", "no_duration_filesize"]
    args += ["-f", fmt, url]
    return args


def publish(
    url: str,
    *,
    duration: float,
    size: str = "1280x720",
    rate: int = 30,
    bitrate: str = "3M",
    gop: int = 60,
    tone_hz: int = 1000,
    pattern: str = "testsrc2",
    realtime: bool = True,
    extra_args: Sequence[str] = (),
    log_path: Path | None = None,
    fmt: str | None = None,
) -> FfmpegProcess:
    """Start publishing `duration` seconds to `url`; stop it early with `stop(proc)` or `kill(proc)`.

    `fmt` defaults to flv, or mpegts for srt:// and udp:// URLs. Give the backup input a different
    `pattern` (e.g. `smptehdbars`) or `tone_hz` so a test can tell which input a destination shows.
    """
    args = publish_args(
        url,
        duration=duration,
        size=size,
        rate=rate,
        bitrate=bitrate,
        gop=gop,
        tone_hz=tone_hz,
        pattern=pattern,
        realtime=realtime,
        extra_args=extra_args,
        fmt=fmt,
    )
    return FfmpegProcess(args, log_path)


def record(
    url: str,
    out_path: Path,
    *,
    duration: float | None = None,
    listen: bool = False,
    input_args: Sequence[str] = (),
    log_path: Path | None = None,
) -> FfmpegProcess:
    """Receive `url` and copy it, without re-encoding, into `out_path` (container from its suffix).

    With `listen=True` ffmpeg is the server (`-listen 1` for rtmp://, `mode=listener` belongs in an srt://
    URL): a single-connection destination whose file gets a proper trailer when it ends or on SIGTERM.
    """
    args = ["ffmpeg", "-hide_banner", "-nostdin", "-nostats", "-loglevel", "info", "-y"]
    if listen and url.startswith("rtmp"):
        args += ["-listen", "1"]
    args += list(input_args)
    args += ["-i", url, "-map", "0", "-c", "copy"]
    if duration is not None:
        args += ["-t", f"{duration:g}"]
    args.append(str(out_path))
    return FfmpegProcess(args, log_path)


def wait_exit(proc: FfmpegProcess, timeout: float, *, check: bool = True) -> int:
    """Wait for ffmpeg to end by itself; on timeout stop it and raise. With `check`, a non-zero exit raises."""
    try:
        code = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        stop(proc)
        raise TimeoutError(
            f"ffmpeg still running after {timeout}s: {proc.cmdline}\n{proc.log_tail()}"
        ) from None
    if check and code != 0:
        raise RuntimeError(f"ffmpeg exited with {code}: {proc.cmdline}\n{proc.log_tail()}")
    return code


def wait_published(proc: FfmpegProcess, timeout: float) -> int:
    """Wait for a publisher that should send its whole stream; 0 when it did.

    ffmpeg 5.1's libsrt output sometimes aborts in its teardown (glibc "corrupted double-linked list",
    SIGABRT) after it has sent everything and printed its final statistics (``Lsize=``): that counts as
    published. Any other non-zero exit raises with ffmpeg's log.
    """
    code = wait_exit(proc, timeout, check=False)
    if code in (-signal.SIGABRT, -signal.SIGSEGV) and "Lsize=" in proc.log_tail(20_000):
        return 0
    if code != 0:
        raise RuntimeError(f"ffmpeg exited with {code}: {proc.args}\n{proc.log_tail()}")
    return code


def kill(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process group: the peer sees the connection drop with no clean unpublish."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(10)


__all__ = [
    "FfmpegProcess",
    "container_for",
    "kill",
    "publish",
    "publish_args",
    "record",
    "stop",
    "wait_exit",
    "wait_published",
]
