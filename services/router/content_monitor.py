"""Hands sampled media of an event's inputs to the content analysers in a worker thread.

Bounded by construction: per input at most one video job and one audio job are in flight; a keyframe
that arrives while its input's previous one is still being analysed is skipped (subsampling, not
queueing), and audio is batched about every half second. Verdicts come back through a thread-safe
queue that the event's tick drains, as ``(input_id, kind, bad)``.
"""

from __future__ import annotations

import logging
import queue
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field

from shared.messages import TIMEBASE, FailoverPolicy, MediaPacket

from .content import SILENCE_DBFS, AudioAnalyser, VideoAnalyser

log = logging.getLogger(__name__)

AUDIO_BATCH_TICKS = TIMEBASE // 2
AUDIO_BATCH_MAX = 200

Verdict = tuple[str, str, bool]


@dataclass
class _InputAnalysis:
    video: VideoAnalyser = field(default_factory=VideoAnalyser)
    audio: AudioAnalyser = field(default_factory=AudioAnalyser)
    video_busy: bool = False
    audio_busy: bool = False
    audio_batch: list[MediaPacket] = field(default_factory=list)


class ContentMonitor:
    def __init__(self, pool: Executor, ctx: dict[str, str] | None = None) -> None:
        self._pool = pool
        self._inputs: dict[str, _InputAnalysis] = {}
        self.verdicts: queue.SimpleQueue[Verdict] = queue.SimpleQueue()
        self.skipped = 0
        self._ctx = ctx or {}

    def offer(self, packet: MediaPacket, policy: FailoverPolicy) -> None:
        watch_video = policy.black_s > 0 or policy.frozen_s > 0
        if packet.kind == "video" and packet.keyframe and packet.config and watch_video:
            state = self._inputs.setdefault(packet.source, _InputAnalysis())
            if state.video_busy:
                self.skipped += 1
                return
            state.video_busy = True
            video = self._pool.submit(state.video.analyse, packet)
            video.add_done_callback(lambda f: self._video_done(packet.source, state, f))
        elif packet.kind == "audio" and policy.silence_s > 0 and packet.config:
            state = self._inputs.setdefault(packet.source, _InputAnalysis())
            batch = state.audio_batch
            batch.append(packet)
            if len(batch) > AUDIO_BATCH_MAX:
                del batch[: len(batch) - AUDIO_BATCH_MAX]
            if state.audio_busy or batch[-1].dts - batch[0].dts < AUDIO_BATCH_TICKS:
                return
            state.audio_batch = []
            state.audio_busy = True
            audio = self._pool.submit(state.audio.level_dbfs, batch)
            audio.add_done_callback(lambda f: self._audio_done(packet.source, state, f))

    def forget(self, input_id: str) -> None:
        """The input's session ended: the next one starts from scratch (new decoder, no previous picture)."""
        self._inputs.pop(input_id, None)

    def _video_done(
        self, input_id: str, state: _InputAnalysis, future: Future[tuple[bool, bool] | None]
    ) -> None:
        state.video_busy = False
        try:
            result = future.result()
        except Exception:
            log.exception("router.content_failed", extra={**self._ctx, "input_id": input_id})
            return
        if result is not None:
            black, frozen = result
            self.verdicts.put((input_id, "black", black))
            self.verdicts.put((input_id, "frozen", frozen))

    def _audio_done(self, input_id: str, state: _InputAnalysis, future: Future[float | None]) -> None:
        state.audio_busy = False
        try:
            level = future.result()
        except Exception:
            log.exception("router.content_failed", extra={**self._ctx, "input_id": input_id})
            return
        if level is not None:
            self.verdicts.put((input_id, "silence", level < SILENCE_DBFS))

    def drain(self) -> list[Verdict]:
        out: list[Verdict] = []
        while True:
            try:
                out.append(self.verdicts.get_nowait())
            except queue.Empty:
                return out
