"""The router's failover clock, against a real nats-server: an event started ahead of its encoders does
not tick (the machine is waiting, the clock cannot change it); its first video packet starts the clock
and goes on air."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import msgspec
import pytest

from services.router.event_router import EventRouter
from services.router.slate import SlateParams, encode_slate
from shared import bus, subjects
from shared.messages import EventSpec, InputSpec, MediaPacket, RouterStatus, decode, encode_packet
from tests.peers.nats_server import NatsServer
from tests.peers.procs import async_wait_until

pytestmark = pytest.mark.timeout(60)

T, E, P = "tn_clock", "ev_clock", "in_p"


def keyframe() -> MediaPacket:
    """A real H.264 keyframe with its avcC (the slate encoder's), as input ``P``'s."""
    first = encode_slate(SlateParams(160, 120, 30)).video[0]
    assert first.keyframe and first.config
    return msgspec.structs.replace(first, source=P, dts=0, pts=0)


async def test_the_clock_parks_until_the_first_video_then_runs(nats_server: NatsServer) -> None:
    nc = await bus.connect(nats_server.url, "router-clock-test")
    spec = EventSpec(T, E, "clock", "live", inputs=(InputSpec(P, "primary", "rtmp", "0" * 64),))
    statuses: list[RouterStatus] = []
    program: list[bytes] = []

    async def on_status(msg: object) -> None:
        statuses.append(decode(msg.data, RouterStatus))  # type: ignore[attr-defined]

    async def on_program(msg: object) -> None:
        program.append(msg.data)  # type: ignore[attr-defined]

    await nc.subscribe(subjects.router_status(T, E), cb=on_status)
    await nc.subscribe(subjects.program_media(T, E), cb=on_program)
    with ThreadPoolExecutor(1) as pool:
        router = EventRouter(nc, spec, pool)
        await router.start()
        try:
            await async_wait_until(lambda: router.clock_parked, 5, "the clock to park")
            # two status reports (a second apart) while no input publishes: the clock never ticked
            await async_wait_until(lambda: len(statuses) >= 3, 10, "three router statuses")
            assert router.ticks == 0 and router.clock_parked
            assert statuses[-1].live_input == ""

            await nc.publish(subjects.input_media(T, E, P), encode_packet(keyframe()))
            await async_wait_until(lambda: router.ticks >= 3, 5, "the clock to run")
            assert not router.clock_parked
            await async_wait_until(lambda: program, 5, "the first packet on the program")
            assert router.state.live == P
            # the clock keeps running on its own now: the input's silence takes it off air
            await async_wait_until(lambda: router.state.target != P, 10, "loss to take the input off air")
        finally:
            await router.stop(forget=True)
            await nc.close()
