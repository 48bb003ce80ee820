"""The real-peer harness tests itself: ffmpeg publishes to nginx-rtmp, the stat page sees it, the judge
passes the recording and fails damaged copies of it, on_publish can refuse, and the TCP proxy can cut a
publisher off."""

from __future__ import annotations

import http.server
import random
import shutil
import socket
import subprocess
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import ClassVar

import pytest

from tests.peers import ffmpeg, judge
from tests.peers.nginx_rtmp import NginxRtmp, start_nginx_rtmp
from tests.peers.ports import free_port, tcp_listening, udp_bound
from tests.peers.procs import wait_until
from tests.peers.tcp_proxy import TcpProxy

pytestmark = pytest.mark.e2e

SECONDS = 4.0


def publish_and_record(nginx: NginxRtmp, url: str, stream: str, log: Path) -> Path:
    pub = ffmpeg.publish(url, duration=SECONDS, log_path=log)
    try:
        seen = nginx.wait_publishing(stream, 15, min_bytes=100_000)
        assert seen["publishing"] and seen["nclients"] >= 1
        assert (seen["video_codec"], seen["width"], seen["height"], seen["audio_codec"]) == (
            "H264",
            1280,
            720,
            "AAC",
        )
        ffmpeg.wait_exit(pub, 30)
    finally:
        ffmpeg.stop(pub)
    return nginx.wait_recording_closed(stream, 10)


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One clean 4 s recording over plain RTMP, shared by the judge tests."""
    workdir = tmp_path_factory.mktemp("harness")
    server = start_nginx_rtmp(workdir / "nginx")
    try:
        yield publish_and_record(server, server.url("live", "clean"), "clean", workdir / "pub.log")
    finally:
        server.stop()


def test_rtmp_publish_is_recorded_and_passes_the_judge(recording: Path) -> None:
    streams = judge.assert_valid_recording(recording, min_duration=SECONDS - 0.5, max_duration=SECONDS + 0.5)
    video, audio = streams["video"], streams["audio"]
    assert (video.codec, video.width, video.height) == ("h264", 1280, 720)
    assert (audio.codec, audio.sample_rate) == ("aac", 48000)
    assert video.keyframe_count == 2  # gop 60 at 30 fps over 4 s
    assert judge.keyframe_times(recording)[1] - judge.keyframe_times(recording)[0] == pytest.approx(
        2.0, abs=0.05
    )
    assert abs(judge.duration(recording) - SECONDS) <= 0.5


def test_rtmps_publish_through_the_tls_proxy(nginx: Callable[..., NginxRtmp], tmp_path: Path) -> None:
    server = nginx(tls=True)
    rec = publish_and_record(server, server.rtmps_url("live", "secure"), "secure", tmp_path / "pub.log")
    judge.assert_valid_recording(rec, min_duration=SECONDS - 0.5, max_duration=SECONDS + 0.5)
    assert f"connected to 127.0.0.1:{server.rtmp_port}" in server.log_text(), (
        "the publish did not go through TLS"
    )
    assert not server.is_publishing("secure")
    assert [p.name for p in server.recordings()] == [rec.name]


def test_a_truncated_copy_fails_the_judge(recording: Path, tmp_path: Path) -> None:
    data = recording.read_bytes()
    cut = tmp_path / "truncated.flv"
    cut.write_bytes(data[: len(data) * 6 // 10])
    with pytest.raises(AssertionError, match="shorter than"):
        judge.assert_valid_recording(cut, min_duration=SECONDS - 0.5)


def test_a_corrupted_copy_fails_the_judge(recording: Path, tmp_path: Path) -> None:
    data = bytearray(recording.read_bytes())
    rnd = random.Random(7)
    middle = len(data) // 3
    data[middle : middle + 4000] = bytes(rnd.randrange(256) for _ in range(4000))
    bad = tmp_path / "corrupted.flv"
    bad.write_bytes(bytes(data))
    with pytest.raises(AssertionError, match="decode errors"):
        judge.assert_valid_recording(bad)


def test_a_copy_without_audio_fails_the_judge(recording: Path, tmp_path: Path) -> None:
    silent = tmp_path / "silent.flv"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-i", str(recording), "-map", "0:v", "-c", "copy", str(silent)],
        check=True,
        timeout=60,
    )
    with pytest.raises(AssertionError, match="no audio packets"):
        judge.assert_valid_recording(silent)
    judge.assert_valid_recording(silent, require_audio=False)


class _OnPublish(http.server.BaseHTTPRequestHandler):
    seen: ClassVar[list[dict[str, list[str]]]] = []

    def do_GET(self) -> None:
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        self.seen.append(query)
        self.send_response(403 if query.get("name") == ["denied"] else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_on_publish_can_refuse_a_stream(nginx: Callable[..., NginxRtmp], tmp_path: Path) -> None:
    hook = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _OnPublish)
    threading.Thread(target=hook.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        server = nginx(on_publish_url=f"http://127.0.0.1:{hook.server_address[1]}/on_publish", record=False)
        denied = ffmpeg.publish(server.url("live", "denied"), duration=2, log_path=tmp_path / "denied.log")
        assert ffmpeg.wait_exit(denied, 30, check=False) != 0, (
            "nginx-rtmp accepted a publish its hook refused"
        )
        allowed = ffmpeg.publish(server.url("live", "allowed"), duration=2, log_path=tmp_path / "allowed.log")
        ffmpeg.wait_exit(allowed, 30)
    finally:
        hook.shutdown()
        hook.server_close()
    names = [q.get("name") for q in _OnPublish.seen]
    assert ["denied"] in names and ["allowed"] in names
    assert all(q.get("call") == ["publish"] and q.get("app") == ["live"] for q in _OnPublish.seen)
    assert server.recordings() == []


def test_the_proxy_can_cut_a_publisher_off(
    nginx: Callable[..., NginxRtmp], tcp_proxy: Callable[..., TcpProxy], tmp_path: Path
) -> None:
    server = nginx()
    proxy = tcp_proxy(server.rtmp_port)
    pub = ffmpeg.publish(
        f"rtmp://127.0.0.1:{proxy.port}/live/cut", duration=30, log_path=tmp_path / "pub.log"
    )
    try:
        server.wait_publishing("cut", 15, min_bytes=300_000)
        assert proxy.reset_connections() == 1
        assert ffmpeg.wait_exit(pub, 15, check=False) != 0
    finally:
        ffmpeg.stop(pub)
    rec = server.wait_recording_closed("cut", 10)
    # What nginx-rtmp got before the reset is still a clean recording, just short.
    judge.assert_valid_recording(rec, max_duration=25)
    assert proxy.connections == 1 and proxy.bytes_to_target >= 300_000


@pytest.mark.parametrize("protocol", ["srt", "rtmp"])
def test_ffmpeg_as_a_one_shot_listener_records_a_publish(protocol: str, tmp_path: Path) -> None:
    if protocol == "srt":
        port = free_port(socket.SOCK_DGRAM)
        listen_url = f"srt://127.0.0.1:{port}?mode=listener"
        publish_url = f"srt://127.0.0.1:{port}?mode=caller&pkt_size=1316"
        ready = partial(udp_bound, port)
        out = tmp_path / "srt.ts"
    else:
        port = free_port()
        listen_url = publish_url = f"rtmp://127.0.0.1:{port}/live/one"
        ready = partial(tcp_listening, port)
        out = tmp_path / "rtmp.flv"
    receiver = ffmpeg.record(listen_url, out, listen=True, log_path=tmp_path / "receiver.log")
    try:
        wait_until(lambda: ready() or receiver.poll() is not None, 10, f"ffmpeg to listen on {protocol}")
        pub = ffmpeg.publish(publish_url, duration=3, log_path=tmp_path / "pub.log")
        ffmpeg.wait_exit(pub, 30)
        ffmpeg.wait_exit(receiver, 30)
    finally:
        ffmpeg.stop(receiver)
    # ffmpeg's SRT listener loses the last few frames when the caller hangs up; RTMP keeps them all.
    judge.assert_valid_recording(out, min_duration=2.5, max_duration=3.5)


def test_ffmpeg_is_on_path() -> None:
    for tool in ("ffmpeg", "ffprobe", "nginx", "openssl"):
        assert shutil.which(tool), f"{tool} is missing: run deploy/setup.sh"
