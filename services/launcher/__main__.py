"""`make run`: the whole stack on one machine, in the foreground, stopped by Ctrl-C or SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from shared import config, logs, urls

from . import nats_embedded
from .supervisor import Supervisor, child_env

log = logging.getLogger("launcher")

SERVICES = ("orchestrator", "vault", "ingest", "router", "output", "transcode")


async def main() -> int:
    settings = config.load()
    logs.setup("launcher", settings.log_level)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    nats_proc = None
    service_urls: dict[str, str] = {}
    nats_url = settings.nats_url
    if nats_url is None:  # embedded: each service connects as its own user
        nats_proc, service_urls = await nats_embedded.start(settings.data_dir)
        nats_url = service_urls[nats_embedded.OPERATOR]
        log.info(
            "launcher.nats_started",
            extra={"url": urls.sanitize(nats_url), "data": str(settings.data_dir / "nats")},
        )
    supervisor = Supervisor(child_env(FANOUT_NATS_URL=nats_url, FANOUT_DATA_DIR=str(settings.data_dir)))
    for name in SERVICES:
        supervisor.add(name, {"FANOUT_NATS_URL": service_urls[name]} if name in service_urls else {})
    supervisor.start()
    api = f"http://{settings.public_host}:{settings.http_port}"
    nats_note = (
        f" (one user per service; operator URL in {settings.data_dir / 'nats.url'})" if nats_proc else ""
    )
    print(
        "\nFanout is starting.\n"
        f"  API:          {api}/v1 (OpenAPI: {api}/v1/openapi.json)\n"
        f"  RTMP ingest:  rtmp://{settings.public_host}:{settings.rtmp_port}/live/<stream key>\n"
        f"  NATS:         {urls.sanitize(nats_url)}{nats_note}\n"
        f"  Data:         {settings.data_dir}\n"
        "  Admin key:    FANOUT_ADMIN_KEY if set, else printed once by the orchestrator on first run.\n"
        "  Publish:      create an event and an input through the API; give the input's publish_url to\n"
        "                your encoder (ffmpeg -re -i SOURCE -c copy -f flv PUBLISH_URL).\n"
        "  Stop:         Ctrl-C\n",
        flush=True,
    )
    await stop.wait()
    log.info("launcher.stopping")
    await supervisor.stop()
    if nats_proc is not None and nats_proc.returncode is None:
        nats_proc.terminate()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(nats_proc.wait(), 10)
        if nats_proc.returncode is None:
            nats_proc.kill()
    log.info("launcher.stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
