"""A real RTMP destination that records what it receives: nginx with the RTMP module, on free loopback ports.

It stands in for YouTube/Twitch (plain RTMP) and, with the stream module terminating TLS in front of it, for
an RTMPS ingest such as Facebook. An `http` server with `rtmp_stat all` shows which streams are being
published and how many bytes arrived, which is how a test sees that a destination is receiving.

Behaviour worth knowing (nginx 1.22, nginx-rtmp 1.1.4 on Debian 12):
- `record_unique on` names a recording `<stream>-<unix seconds>.flv`; it is closed the moment the
  publisher's TCP connection ends (the stream leaves the stat page at the same time).
- `bw_in` in the stat page is averaged over 10 s windows, so it reads 0 during a stream's first 10 s;
  `bytes_in` grows at once and is the field to poll.
- nginx-rtmp keeps a publisher whose connection stalls until its `timeout` (60 s) unless
  `drop_idle_publisher` is set (pass it in `extra_app_directives`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict

from .ports import free_port
from .procs import port_open, stop, wait_until
from .tls import session_cert

MODULES_DIR = Path("/usr/lib/nginx/modules")
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"  # /usr/sbin is not on a normal user's PATH


class StreamStat(TypedDict):
    publishing: bool
    bw_in: int  # bits/s averaged over 10 s windows: 0 for a stream's first 10 s
    bytes_in: int
    nclients: int  # the publisher counts as a client
    time_ms: int
    video_codec: str | None
    width: int | None
    height: int | None
    audio_codec: str | None


@dataclass(frozen=True)
class _Ports:
    rtmp: int
    rtmps: int | None
    stat: int


def render_config(
    prefix: Path,
    ports: _Ports,
    *,
    rec_dir: Path,
    cert_file: Path | None,
    key_file: Path | None,
    record: bool,
    on_publish_url: str | None,
    notify_method: str,
    applications: tuple[str, ...],
    extra_app_directives: str,
) -> str:
    apps = []
    for app in applications:
        lines = [f"application {app} {{", "    live on;"]
        if record:
            lines += ["    record all;", f"    record_path {rec_dir / app};", "    record_unique on;"]
        if on_publish_url:
            lines += [f"    on_publish {on_publish_url};", f"    notify_method {notify_method};"]
        if extra_app_directives:
            lines.append(f"    {extra_app_directives}")
        lines.append("}")
        apps.append("\n        ".join(lines))
    app_blocks = "\n        ".join(apps)
    # nginx would hand workers to an unprivileged user who cannot write a test's tmp dir.
    user = "user root;" if os.geteuid() == 0 else ""
    tls = ""
    if ports.rtmps is not None:
        tls = f"""
stream {{
    server {{
        listen 127.0.0.1:{ports.rtmps} ssl;
        ssl_certificate {cert_file};
        ssl_certificate_key {key_file};
        proxy_pass 127.0.0.1:{ports.rtmp};
    }}
}}"""
    temp = " ".join(
        f"{kind}_temp_path {prefix / 'tmp' / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""load_module {MODULES_DIR / "ngx_rtmp_module.so"};
load_module {MODULES_DIR / "ngx_stream_module.so"};
daemon off; master_process on; worker_processes 1; {user}
pid {prefix / "nginx.pid"};
error_log {prefix / "error.log"} info;
events {{ worker_connections 1024; }}
rtmp {{
    server {{
        listen 127.0.0.1:{ports.rtmp};
        chunk_size 4096;
        {app_blocks}
    }}
}}{tls}
http {{
    access_log off;
    keepalive_timeout 0;
    {temp}
    server {{
        listen 127.0.0.1:{ports.stat};
        location /stat {{ rtmp_stat all; }}
    }}
}}
"""


@dataclass
class NginxRtmp:
    proc: subprocess.Popen[bytes]
    workdir: Path
    rtmp_port: int
    rtmps_port: int | None
    stat_port: int
    rec_dir: Path
    cert_file: Path | None
    applications: tuple[str, ...] = ("live",)
    _stopped: bool = field(default=False, repr=False)

    @property
    def error_log(self) -> Path:
        return self.workdir / "error.log"

    def url(self, app: str, stream: str) -> str:
        return f"rtmp://127.0.0.1:{self.rtmp_port}/{app}/{stream}"

    def rtmps_url(self, app: str, stream: str) -> str:
        if self.rtmps_port is None:
            raise RuntimeError("this nginx-rtmp was started without tls=True")
        return f"rtmps://127.0.0.1:{self.rtmps_port}/{app}/{stream}"

    def log_text(self) -> str:
        try:
            return self.error_log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def recordings(self, stream: str | None = None, app: str | None = None) -> list[Path]:
        """FLV files recorded so far (oldest first); a recording is complete once its publish ended."""
        root = self.rec_dir / app if app else self.rec_dir
        files = [p for p in root.rglob("*.flv") if stream is None or p.stem.rsplit("-", 1)[0] == stream]
        return sorted(files, key=lambda p: (p.stat().st_mtime, p.name))

    def stat(self) -> dict[str, dict[str, StreamStat]]:
        """app -> {stream name: StreamStat} for every stream nginx-rtmp knows about right now."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.stat_port}/stat", timeout=5) as resp:
            root = ET.fromstring(resp.read())
        apps: dict[str, dict[str, StreamStat]] = {}
        for app in root.iter("application"):
            streams: dict[str, StreamStat] = {}
            for node in app.iterfind("live/stream"):
                streams[node.findtext("name", "")] = StreamStat(
                    publishing=node.find("publishing") is not None,
                    bw_in=int(node.findtext("bw_in", "0")),
                    bytes_in=int(node.findtext("bytes_in", "0")),
                    nclients=int(node.findtext("nclients", "0")),
                    time_ms=int(node.findtext("time", "0")),
                    video_codec=node.findtext("meta/video/codec"),
                    width=_int_or_none(node.findtext("meta/video/width")),
                    height=_int_or_none(node.findtext("meta/video/height")),
                    audio_codec=node.findtext("meta/audio/codec"),
                )
            apps[app.findtext("name", "")] = streams
        return apps

    def stream_stat(self, stream: str, app: str = "live") -> StreamStat | None:
        return self.stat().get(app, {}).get(stream)

    def is_publishing(self, stream: str, app: str = "live") -> bool:
        found = self.stream_stat(stream, app)
        return found is not None and found["publishing"]

    def wait_publishing(
        self, stream: str, timeout: float, app: str = "live", min_bytes: int = 1
    ) -> StreamStat:
        """Wait until someone publishes `stream` and at least `min_bytes` arrived."""

        def receiving() -> bool:
            found = self.stream_stat(stream, app)
            return found is not None and found["publishing"] and found["bytes_in"] >= min_bytes

        self._wait(receiving, timeout, f"nginx-rtmp to receive {app}/{stream} ({min_bytes}+ bytes)")
        found = self.stream_stat(stream, app)
        assert found is not None
        return found

    def wait_recording_closed(self, stream: str, timeout: float, app: str | None = None) -> Path:
        """Wait until `stream` is no longer published and a recording of it exists; return the newest one."""

        def closed() -> bool:
            apps = self.stat()
            live = [
                s
                for name, streams in apps.items()
                if app in (None, name)
                for n, s in streams.items()
                if n == stream
            ]
            return not any(s["publishing"] for s in live) and bool(self.recordings(stream, app))

        self._wait(closed, timeout, f"the recording of {stream} to close")
        return self.recordings(stream, app)[-1]

    def _wait(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        try:
            wait_until(lambda: bool(predicate()) or self.proc.poll() is not None, timeout, what, interval=0.1)
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\n--- nginx error.log tail ---\n{self.log_text()[-3000:]}") from None
        if self.proc.poll() is not None:
            raise RuntimeError(f"nginx exited ({self.proc.returncode}): {self.log_text()[-3000:]}")

    def stop(self) -> None:
        if not self._stopped:
            self._stopped = True
            stop(self.proc)


def _int_or_none(text: str | None) -> int | None:
    return int(text) if text and text.strip().lstrip("-").isdigit() else None


def start_nginx_rtmp(
    workdir: Path,
    *,
    tls: bool = False,
    record: bool = True,
    on_publish_url: str | None = None,
    notify_method: str = "get",
    applications: tuple[str, ...] = ("live",),
    extra_app_directives: str = "",
    timeout: float = 10.0,
) -> NginxRtmp:
    """Start nginx-rtmp under `workdir` and wait until every port listens; raise with the log tail if not.

    `on_publish_url` gets nginx-rtmp's publish notification (`notify_method get` puts app, name and args in
    the query string); a 2xx reply allows the publish, anything else rejects it.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    rec_dir = workdir / "rec"
    for app in applications:
        (rec_dir / app).mkdir(parents=True, exist_ok=True)
    for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (workdir / "tmp" / kind).mkdir(parents=True, exist_ok=True)
    cert = session_cert() if tls else None
    last_error = ""
    for _attempt in range(3):  # a free port can be taken between choosing and binding it
        ports = _Ports(rtmp=free_port(), rtmps=free_port() if tls else None, stat=free_port())
        conf = workdir / "nginx.conf"
        conf.write_text(
            render_config(
                workdir,
                ports,
                rec_dir=rec_dir,
                cert_file=cert.cert_file if cert else None,
                key_file=cert.key_file if cert else None,
                record=record,
                on_publish_url=on_publish_url,
                notify_method=notify_method,
                applications=applications,
                extra_app_directives=extra_app_directives,
            )
        )
        error_log = workdir / "error.log"
        error_log.unlink(missing_ok=True)
        with open(workdir / "nginx.out", "ab") as out:
            proc = subprocess.Popen(
                [NGINX, "-p", str(workdir), "-e", str(error_log), "-c", str(conf)],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        server = NginxRtmp(
            proc,
            workdir,
            ports.rtmp,
            ports.rtmps,
            ports.stat,
            rec_dir,
            cert.cert_file if cert else None,
            applications,
        )
        wanted = [p for p in (ports.rtmp, ports.rtmps, ports.stat) if p is not None]

        def listening(proc: subprocess.Popen[bytes] = proc, wanted: list[int] = wanted) -> bool:
            return proc.poll() is not None or all(port_open(p) for p in wanted)

        try:
            wait_until(listening, timeout, "nginx-rtmp to listen")
        except TimeoutError:
            server.stop()
            raise RuntimeError(f"nginx-rtmp did not listen within {timeout}s: {_tail(workdir)}") from None
        if proc.poll() is None:
            return server
        server.stop()
        last_error = _tail(workdir)
        if "Address already in use" not in last_error:
            break
    raise RuntimeError(f"nginx-rtmp failed to start: {last_error}")


def _tail(workdir: Path) -> str:
    text = ""
    for name in ("error.log", "nginx.out"):
        path = workdir / name
        if path.exists():
            text += path.read_text(errors="replace")[-3000:]
    return text
