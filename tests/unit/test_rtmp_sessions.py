"""Server and client sessions driven purely in memory, against each other and against captured peers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shared.rtmp import amf0, chunk, control
from shared.rtmp.chunk import ChunkReader, RtmpMessage
from shared.rtmp.client_session import (
    Acknowledged,
    ClientEvent,
    ClientSession,
    ClientState,
    Published,
    Rejected,
    StatusReceived,
)
from shared.rtmp.control import Command
from shared.rtmp.errors import ProtocolError
from shared.rtmp.server_session import (
    Connected,
    Event,
    MediaReceived,
    PlayRequested,
    PublishRequested,
    ServerSession,
    ServerState,
    Unpublished,
)

GOLDEN = Path(__file__).parent / "golden"
HANDSHAKE = 1 + 2 * 1536  # C0+C1+C2 or S0+S1+S2


# --- helpers ---


def server_events(server: ServerSession) -> list[Event]:
    out = []
    while (event := server.next_event()) is not None:
        out.append(event)
    return out


def client_events(client: ClientSession) -> list[ClientEvent]:
    out = []
    while (event := client.next_event()) is not None:
        out.append(event)
    return out


def pump(client: ClientSession, server: ServerSession) -> None:
    for _ in range(20):
        up, down = client.data_to_send(), b""
        if up:
            server.receive_data(up)
        down = server.data_to_send()
        if down:
            client.receive_data(down)
        if not up and not down:
            return
    raise AssertionError("the sessions kept talking")


class Peer:
    """Reads one side's output as the other side would (after the handshake)."""

    def __init__(self, skip: int = 0) -> None:
        self.reader = ChunkReader()
        self.skip = skip

    def read(self, data: bytes) -> list[RtmpMessage]:
        if self.skip:
            taken = min(self.skip, len(data))
            data, self.skip = data[taken:], self.skip - taken
        return self.reader.feed(data)

    def commands(self, data: bytes) -> list[tuple[Command, int]]:
        return [
            (control.parse_command(m.payload), m.stream_id)
            for m in self.read(data)
            if m.type_id == chunk.COMMAND_AMF0
        ]


def cmd(name: str, transaction: float, obj: Any = None, *args: Any, stream_id: int = 0) -> bytes:
    payload = control.encode_command(name, transaction, obj, *args)
    return chunk.encode_message(chunk.CSID_COMMAND, chunk.COMMAND_AMF0, 0, stream_id, payload, 128)


def msg(type_id: int, payload: bytes, timestamp: int = 0, stream_id: int = 1, csid: int = 6) -> bytes:
    return chunk.encode_message(csid, type_id, timestamp, stream_id, payload, 128)


CONNECT = cmd(
    "connect", 1, {"app": "live", "tcUrl": "rtmp://h/live", "flashVer": "FMLE/3.0", "objectEncoding": 0.0}
)


def handshaken_server(**kwargs: Any) -> ServerSession:
    server = ServerSession(**kwargs)
    server.receive_data(b"\x03" + bytes(3072))
    server.data_to_send()
    return server


def connected_server() -> ServerSession:
    server = handshaken_server()
    server.receive_data(CONNECT)
    server.data_to_send()
    assert server_events(server) == [Connected("live", "rtmp://h/live", "FMLE/3.0")]
    return server


def pending_server(name: str = "key") -> ServerSession:
    server = connected_server()
    server.receive_data(cmd("createStream", 2) + cmd("publish", 3, None, name, "live", stream_id=1))
    assert server_events(server) == [PublishRequested(name, "live", 1)]
    return server


def publishing_server() -> ServerSession:
    server = pending_server()
    server.accept_publish()
    server.data_to_send()
    return server


def media(server: ServerSession) -> list[tuple[int, int, bytes]]:
    return [
        (e.type_id, e.timestamp, e.payload) for e in server_events(server) if isinstance(e, MediaReceived)
    ]


def handshaken_client(**kwargs: Any) -> tuple[ClientSession, Peer]:
    client = ClientSession("live", "out1", "rtmp://dest/live", **kwargs)
    client.initiate()
    client.data_to_send()
    client.receive_data(b"\x03" + bytes(3072))
    peer = Peer(skip=1536)  # C2 precedes the chunk stream
    return client, peer


def published_client() -> tuple[ClientSession, Peer]:
    client, peer = handshaken_client()
    client.receive_data(cmd("_result", 1, {}, {"code": "NetConnection.Connect.Success"}))
    client.receive_data(cmd("_result", 4, None, 1.0))
    client.receive_data(
        cmd("onStatus", 0, None, {"level": "status", "code": "NetStream.Publish.Start"}, stream_id=1)
    )
    assert client_events(client) == [Published()]
    peer.read(client.data_to_send())
    return client, peer


# --- client and server against each other ---


def test_full_conversation_publish_media_unpublish() -> None:
    client = ClientSession("live", "key?x=y", "rtmp://ingest/live")
    server = ServerSession()
    client.initiate()
    pump(client, server)
    assert server_events(server) == [
        Connected("live", "rtmp://ingest/live", "FMLE/3.0 (compatible; Fanout)"),
        PublishRequested("key?x=y", "live", 1),
    ]
    assert server.state is ServerState.PUBLISH_PENDING
    assert client_events(client) == []
    server.accept_publish()
    pump(client, server)
    assert client_events(client) == [Published()]
    assert client.state is ClientState.PUBLISHED
    assert server.state is ServerState.PUBLISHING
    assert client.stream_id == server.publish_stream_id == 1

    metadata = amf0.encode("@setDataFrame", "onMetaData", amf0.EcmaArray(width=64.0))
    video = b"\x17\x01\x00\x00\x00" + bytes(10_000)
    hot_path = chunk.message_header(chunk.CSID_AUDIO, chunk.AUDIO, 0x1000000, client.stream_id, 300)
    hot_path += chunk.chunk_body(b"a" * 300, client.chunk_size_out, chunk.CSID_AUDIO, 0x1000000)
    server.receive_data(
        client.encode_media(chunk.DATA_AMF0, 0, metadata)
        + client.encode_media(chunk.VIDEO, 40, video)
        + hot_path
    )
    assert media(server) == [
        (chunk.DATA_AMF0, 0, metadata),
        (chunk.VIDEO, 40, video),
        (chunk.AUDIO, 0x1000000, b"a" * 300),
    ]

    client.unpublish()
    pump(client, server)
    assert server_events(server) == [Unpublished("key?x=y")]
    assert server.state is ServerState.ENDED
    assert client.state is ClientState.UNPUBLISHED
    assert server.bytes_received > 13_000 and client.bytes_received > 3073


def test_rejected_publish_reaches_the_client_with_its_code() -> None:
    client = ClientSession("live", "badkey", "rtmp://ingest/live")
    server = ServerSession()
    client.initiate()
    pump(client, server)
    assert isinstance(server_events(server)[-1], PublishRequested)
    server.reject_publish("NetStream.Publish.BadName", "unknown stream key")
    pump(client, server)
    assert client_events(client) == [Rejected("NetStream.Publish.BadName", "unknown stream key")]
    assert client.state is ClientState.REJECTED
    assert server.state is ServerState.ENDED
    server.receive_data(msg(chunk.VIDEO, b"\x17\x01\x00\x00\x00"))
    assert server_events(server) == []  # media after a rejection is ignored


# --- the server against captured and hand-made publishers ---


def test_golden_ffmpeg_publish_replay() -> None:
    data = (GOLDEN / "ffmpeg_publish.bin").read_bytes()
    server = ServerSession()
    replies = b""
    events: list[Event] = []
    for i in range(0, len(data), 1000):
        server.receive_data(data[i : i + 1000])
        for event in server_events(server):
            events.append(event)
            if isinstance(event, PublishRequested):
                server.accept_publish()
        replies += server.data_to_send()
    assert events[0] == Connected(
        "live", "rtmp://127.0.0.1:57053/live", "FMLE/3.0 (compatible; Lavf59.27.100)"
    )
    assert events[1] == PublishRequested("key123?x=y", "live", 1)
    assert events[-1] == Unpublished("key123?x=y")
    received = [e for e in events if isinstance(e, MediaReceived)]
    assert [e.type_id for e in received].count(chunk.VIDEO) == 7
    assert [e.type_id for e in received].count(chunk.AUDIO) == 26
    assert received[0].type_id == chunk.DATA_AMF0
    assert amf0.decode_all(received[0].payload)[:2] == ["@setDataFrame", "onMetaData"]
    assert [e.timestamp for e in received if e.type_id == chunk.VIDEO] == [0, 0, 100, 200, 300, 400, 400]
    audio_times = [e.timestamp for e in received if e.type_id == chunk.AUDIO]
    assert audio_times == sorted(audio_times) and audio_times[-1] == 691  # fmt 1/2/3 deltas on csid 4

    assert replies[0] == 3 and replies[1 + 1536 : HANDSHAKE] == data[1:1537]  # S2 echoes C1
    messages = Peer().read(replies[HANDSHAKE:])
    assert [m.type_id for m in messages[:3]] == [
        chunk.WINDOW_ACK_SIZE,
        chunk.SET_PEER_BANDWIDTH,
        chunk.SET_CHUNK_SIZE,
    ]
    assert messages[2].payload == (4096).to_bytes(4, "big")
    commands = [control.parse_command(m.payload) for m in messages if m.type_id == chunk.COMMAND_AMF0]
    assert [(c.name, c.transaction_id) for c in commands] == [
        ("_result", 1.0),
        ("_result", 2.0),
        ("_result", 3.0),
        ("_result", 4.0),
        ("onStatus", 0.0),
    ]
    assert commands[0].args[0]["code"] == "NetConnection.Connect.Success"
    assert commands[0].args[0]["objectEncoding"] == 0.0
    assert commands[3].args == [1.0]
    assert commands[4].args[0]["code"] == "NetStream.Publish.Start"
    stream_begin = [m for m in messages if m.type_id == chunk.USER_CONTROL]
    assert [control.parse_user_control(m.payload) for m in stream_begin] == [
        (control.STREAM_BEGIN, b"\x00\x00\x00\x01")
    ]


def test_server_answers_ping_requests() -> None:
    server = connected_server()
    server.receive_data(
        msg(chunk.USER_CONTROL, control.user_control(control.PING_REQUEST, 1234), csid=2, stream_id=0)
    )
    [pong] = Peer().read(server.data_to_send())
    assert control.parse_user_control(pong.payload) == (control.PING_RESPONSE, (1234).to_bytes(4, "big"))


def test_server_acknowledges_once_the_peer_window_is_crossed() -> None:
    server = connected_server()
    server.receive_data(msg(chunk.WINDOW_ACK_SIZE, control.u32_payload(5000), csid=2, stream_id=0))
    assert server.data_to_send() == b""
    server.receive_data(cmd("unknownCommand", 0, None, "x" * 2000))
    acks = [m for m in Peer().read(server.data_to_send()) if m.type_id == chunk.ACK]
    assert [control.parse_u32(m.payload, "ack") for m in acks] == [server.bytes_received]


def test_media_before_publish_is_ignored_and_while_pending_is_emitted() -> None:
    server = connected_server()
    server.receive_data(msg(chunk.VIDEO, b"early"))
    assert server_events(server) == []
    server.receive_data(cmd("publish", 3, None, "key", "live", stream_id=1) + msg(chunk.VIDEO, b"next", 40))
    assert server_events(server) == [
        PublishRequested("key", "live", 1),
        MediaReceived(chunk.VIDEO, 40, b"next"),
    ]


def test_media_is_accepted_on_any_message_stream_id() -> None:
    server = publishing_server()
    server.receive_data(msg(chunk.AUDIO, b"a", 5, stream_id=0, csid=4))
    assert media(server) == [(chunk.AUDIO, 5, b"a")]


def test_media_timestamps_extend_across_the_32_bit_wrap() -> None:
    server = publishing_server()
    for timestamp in (0xFFFFFFF0, 0xFFFFFFFA, 0x10, 0xFFFFFFF8, 0x20):
        server.receive_data(msg(chunk.VIDEO, b"v", timestamp))
    assert [t for _, t, _ in media(server)] == [
        0xFFFFFFF0,
        0xFFFFFFFA,
        2**32 + 0x10,
        0xFFFFFFF8,  # late, from before the wrap
        2**32 + 0x20,
    ]


def test_aggregate_messages_are_unwrapped() -> None:
    def tag(type_id: int, timestamp: int, body: bytes) -> bytes:
        header = bytes((type_id,)) + len(body).to_bytes(3, "big") + (timestamp & 0xFFFFFF).to_bytes(3, "big")
        header += bytes((timestamp >> 24,)) + bytes(3)
        return header + body + (11 + len(body)).to_bytes(4, "big")

    server = publishing_server()
    aggregate = (
        tag(chunk.VIDEO, 1000, b"V1") + tag(chunk.AUDIO, 1010, b"A1") + tag(chunk.VIDEO, 1040, b"V2")[:-4]
    )
    server.receive_data(msg(chunk.AGGREGATE, aggregate, 5000))
    assert media(server) == [
        (chunk.VIDEO, 5000, b"V1"),
        (chunk.AUDIO, 5010, b"A1"),
        (chunk.VIDEO, 5040, b"V2"),
    ]
    with pytest.raises(ProtocolError, match="aggregate tag of 200 bytes overruns"):
        server.receive_data(msg(chunk.AGGREGATE, b"\x09\x00\x00\xc8" + bytes(7) + b"short", 5000))


def test_amf3_data_message_becomes_amf0() -> None:
    server = publishing_server()
    body = amf0.encode("onMetaData", {})
    server.receive_data(msg(chunk.DATA_AMF3, b"\x00" + body, csid=5))
    assert media(server) == [(chunk.DATA_AMF0, 0, body)]


@pytest.mark.parametrize(
    ("unpublish", "expected"),
    [
        (cmd("FCUnpublish", 6, None, "key"), True),
        (cmd("deleteStream", 6, None, 1.0), True),
        (cmd("deleteStream", 6, None, 7.0), False),  # some other stream
        (cmd("closeStream", 0, None, stream_id=1), True),
    ],
)
def test_unpublish_commands(unpublish: bytes, expected: bool) -> None:
    server = publishing_server()
    server.receive_data(unpublish + cmd("deleteStream", 7, None, 1.0))
    assert server_events(server) == [Unpublished("key")]
    if not expected:
        server = publishing_server()
        server.receive_data(unpublish)
        assert server_events(server) == []


def test_play_is_reported_and_rejected() -> None:
    server = connected_server()
    server.receive_data(cmd("createStream", 2) + cmd("play", 3, None, "something", stream_id=1))
    assert server_events(server) == [PlayRequested("something", 1)]
    server.data_to_send()
    server.reject_play("publishers only")
    [(status, stream_id)] = Peer().commands(server.data_to_send())
    assert (status.name, stream_id) == ("onStatus", 1)
    assert status.args[0] == {
        "level": "error",
        "code": "NetStream.Play.Failed",
        "description": "publishers only",
    }
    assert server.state is ServerState.ENDED


def test_create_stream_ids_increment_and_transaction_0_gets_no_reply() -> None:
    server = connected_server()
    server.receive_data(cmd("createStream", 2) + cmd("createStream", 3) + cmd("FCPublish", 0, None, "k"))
    results = [(c.transaction_id, c.args) for c, _ in Peer().commands(server.data_to_send())]
    assert results == [(2.0, [1.0]), (3.0, [2.0])]


def test_unknown_commands_are_ignored() -> None:
    server = connected_server()
    server.receive_data(cmd("getStreamLength", 2, None, "x") + cmd("_checkbw", 3))
    assert server.data_to_send() == b""
    assert server_events(server) == []


def test_connect_reply_echoes_object_encoding() -> None:
    server = handshaken_server(chunk_size_out=60000, window_ack_size=1_000_000)
    server.receive_data(cmd("connect", 1, {"app": "a", "objectEncoding": 3.0}))
    messages = Peer().read(server.data_to_send())
    assert messages[0].payload == control.u32_payload(1_000_000)
    assert messages[1].payload == control.set_peer_bandwidth(1_000_000, control.LIMIT_DYNAMIC)
    assert messages[2].payload == control.u32_payload(60000)
    result = control.parse_command(messages[3].payload)
    assert result.command_object == {"fmsVer": "FMS/3,0,1,123", "capabilities": 31.0, "mode": 1.0}
    assert result.args[0]["objectEncoding"] == 3.0


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: (handshaken_server(), cmd("createStream", 2)), "command 'createStream' before connect"),
        (lambda: (connected_server(), CONNECT), "connect received in state connected"),
        (
            lambda: (publishing_server(), cmd("publish", 5, None, "k2", stream_id=1)),
            "publish received in state publishing",
        ),
        (
            lambda: (pending_server(), cmd("publish", 5, None, "k2", stream_id=1)),
            "publish received in state publish_pending",
        ),
        (
            lambda: (connected_server(), cmd("publish", 5, None, 3.0, stream_id=1)),
            "publish without a stream name",
        ),
        (
            lambda: (connected_server(), msg(chunk.COMMAND_AMF0, amf0.encode(1.0))),
            "does not start with a command name",
        ),
        (
            lambda: (connected_server(), msg(chunk.USER_CONTROL, b"\x00", csid=2)),
            "user control message has 1 bytes",
        ),
    ],
)
def test_protocol_violations(build: Any, message: str) -> None:
    server, data = build()
    with pytest.raises(ProtocolError, match=message):
        server.receive_data(data)


def test_decisions_in_the_wrong_state_are_errors() -> None:
    server = connected_server()
    with pytest.raises(RuntimeError, match="accept_publish called in state connected"):
        server.accept_publish()
    with pytest.raises(RuntimeError, match="reject_publish called in state connected"):
        server.reject_publish()
    with pytest.raises(RuntimeError, match="without a PlayRequested"):
        server.reject_play()


def test_publish_withdrawn_before_the_shell_decides() -> None:
    server = connected_server()
    server.receive_data(
        cmd("publish", 3, None, "key", "live", stream_id=1) + cmd("FCUnpublish", 4, None, "key")
    )
    assert server.next_event() == PublishRequested("key", "live", 1)
    server.accept_publish()  # too late: a no-op, not an error
    assert server.data_to_send() == b""
    assert server_events(server) == [Unpublished("key")]
    server.reject_publish()
    assert server.state is ServerState.ENDED


def test_bad_handshake_version() -> None:
    with pytest.raises(ProtocolError, match="RTMP C0 version 71"):
        ServerSession().receive_data(b"GET / HTTP/1.1\r\n")


# --- the client against captured and hand-made servers ---


def test_golden_nginx_replies_lead_to_published() -> None:
    data = (GOLDEN / "nginx_replies.bin").read_bytes()
    client = ClientSession("live", "out1", "rtmp://127.0.0.1:1935/live")
    client.initiate()
    sent = client.data_to_send()
    for i in range(0, len(data), 700):
        client.receive_data(data[i : i + 700])
        sent += client.data_to_send()
    assert client_events(client) == [Published()]
    assert client.stream_id == 1
    assert client.peer_window_ack_size == 5_000_000
    assert client.peer_bandwidth == 5_000_000

    assert sent[0] == 3 and sent[1:9] == bytes(8)
    assert sent[1537:HANDSHAKE] == data[1:1537]  # C2 echoes S1
    messages = Peer().read(sent[HANDSHAKE:])
    assert messages[0].type_id == chunk.SET_CHUNK_SIZE
    assert messages[0].payload == control.u32_payload(4096)
    commands = [
        (control.parse_command(m.payload), m.stream_id) for m in messages if m.type_id == chunk.COMMAND_AMF0
    ]
    assert [(c.name, c.transaction_id, c.args, sid) for c, sid in commands] == [
        ("connect", 1.0, [], 0),
        ("releaseStream", 2.0, ["out1"], 0),
        ("FCPublish", 3.0, ["out1"], 0),
        ("createStream", 4.0, [], 0),
        ("publish", 5.0, ["out1", "live"], 1),
    ]
    assert commands[0][0].command_object == {
        "app": "live",
        "type": "nonprivate",
        "flashVer": "FMLE/3.0 (compatible; Fanout)",
        "tcUrl": "rtmp://127.0.0.1:1935/live",
        "fpad": False,
        "capabilities": 15.0,
        "audioCodecs": 3191.0,
        "videoCodecs": 252.0,
        "videoFunction": 1.0,
    }
    assert [m.payload for m in messages if m.type_id == chunk.WINDOW_ACK_SIZE] == [
        control.u32_payload(2_500_000)
    ]


def test_client_tolerates_extra_messages_and_any_order() -> None:
    client, peer = handshaken_client(window_ack_size=0)
    peer.read(client.data_to_send())
    client.receive_data(
        cmd("onBWDone", 0, None, 8192.0) + cmd("_result", 1, {}, {"code": "NetConnection.Connect.Success"})
    )
    names = [c.name for c, _ in peer.commands(client.data_to_send())]
    assert names == ["releaseStream", "FCPublish", "createStream"]
    # createStream's result before the others', an unmatched result, onFCPublish and an _error to releaseStream
    client.receive_data(
        cmd("_result", 4, None, 1.0)
        + cmd("_result", 99, None)
        + cmd("onFCPublish", 0, None, {"code": "NetStream.Publish.Start"})
        + cmd("_error", 2, None, {"level": "error", "code": "NetStream.Release.Failed"})
        + cmd("_result", 3, None)
    )
    assert [(c.name, c.args, sid) for c, sid in peer.commands(client.data_to_send())] == [
        ("publish", ["out1", "live"], 1)
    ]
    assert client_events(client) == []
    client.receive_data(
        cmd("onStatus", 0, None, {"level": "status", "code": "NetStream.Publish.Start"}, stream_id=1)
    )
    assert client_events(client) == [Published()]


@pytest.mark.parametrize(
    ("replies", "expected"),
    [
        (
            cmd(
                "_error",
                1,
                None,
                {"level": "error", "code": "NetConnection.Connect.Rejected", "description": "auth"},
            ),
            Rejected("NetConnection.Connect.Rejected", "auth"),
        ),
        (
            cmd("_result", 1, {}, {})
            + cmd("_error", 4, None, {"code": "NetStream.Failed", "description": "no"}),
            Rejected("NetStream.Failed", "no"),
        ),
        (
            cmd("_result", 1, {}, {})
            + cmd("_result", 4, None, 1.0)
            + cmd(
                "onStatus",
                0,
                None,
                {"level": "error", "code": "NetStream.Publish.BadName", "description": "in use"},
            ),
            Rejected("NetStream.Publish.BadName", "in use"),
        ),
        (cmd("_error", 1, None), Rejected("connect._error", "")),
    ],
)
def test_client_rejections(replies: bytes, expected: Rejected) -> None:
    client, _ = handshaken_client()
    client.receive_data(replies)
    assert client_events(client) == [expected]
    assert client.state is ClientState.REJECTED


def test_status_after_published_is_reported_not_rejected() -> None:
    client, _ = published_client()
    client.receive_data(
        cmd("onStatus", 0, None, {"level": "error", "code": "NetStream.Publish.Idle", "description": "d"})
    )
    assert client_events(client) == [StatusReceived("error", "NetStream.Publish.Idle", "d")]
    assert client.state is ClientState.PUBLISHED


def test_client_acknowledgements_pings_and_window() -> None:
    client, peer = published_client()
    client.receive_data(msg(chunk.ACK, control.u32_payload(123456), csid=2, stream_id=0))
    assert client_events(client) == [Acknowledged(123456)]
    assert client.acked_bytes == 123456
    client.receive_data(
        msg(chunk.USER_CONTROL, control.user_control(control.PING_REQUEST, 99), csid=2, stream_id=0)
    )
    client.receive_data(msg(chunk.WINDOW_ACK_SIZE, control.u32_payload(100), csid=2, stream_id=0))
    client.receive_data(cmd("onBWDone", 0, None, "x" * 100))
    out = peer.read(client.data_to_send())
    assert [m.type_id for m in out] == [chunk.USER_CONTROL, chunk.ACK]
    assert control.parse_user_control(out[0].payload) == (control.PING_RESPONSE, control.u32_payload(99))
    assert control.parse_u32(out[1].payload, "ack") == client.bytes_received


def test_encode_media_uses_the_publish_stream_and_media_csids() -> None:
    client, _ = published_client()
    assert client.chunk_size_out == 4096
    reader = ChunkReader()
    reader.set_chunk_size(4096)
    wire = client.encode_media(chunk.VIDEO, 2**32 + 7, b"v" * 5000) + client.encode_media(
        chunk.AUDIO, 8, b"a"
    )
    wire += client.encode_media(chunk.DATA_AMF0, 0, b"d")
    assert reader.feed(wire) == [
        RtmpMessage(chunk.VIDEO, 7, 1, b"v" * 5000, chunk.CSID_VIDEO),
        RtmpMessage(chunk.AUDIO, 8, 1, b"a", chunk.CSID_AUDIO),
        RtmpMessage(chunk.DATA_AMF0, 0, 1, b"d", chunk.CSID_DATA),
    ]
    with pytest.raises(ValueError, match="message type 20 is not audio"):
        client.encode_media(chunk.COMMAND_AMF0, 0, b"")


def test_encode_media_before_create_stream_is_an_error() -> None:
    client, _ = handshaken_client()
    with pytest.raises(RuntimeError, match="before createStream"):
        client.encode_media(chunk.VIDEO, 0, b"")


def test_unpublish_sends_fcunpublish_and_delete_stream_once() -> None:
    client, peer = published_client()
    client.unpublish()
    assert [(c.name, c.args) for c, _ in peer.commands(client.data_to_send())] == [
        ("FCUnpublish", ["out1"]),
        ("deleteStream", [1.0]),
    ]
    client.unpublish()
    assert client.data_to_send() == b""


def test_unpublish_before_connect_result_is_a_no_op() -> None:
    client, _ = handshaken_client()
    client.data_to_send()
    client.unpublish()
    assert client.data_to_send() == b""
    assert client.state is ClientState.CONNECTING


def test_client_lifecycle_errors() -> None:
    client = ClientSession("live", "k", "rtmp://h/live")
    with pytest.raises(RuntimeError, match="before initiate"):
        client.receive_data(b"\x03")
    client.initiate()
    with pytest.raises(RuntimeError, match="initiate called in state handshake"):
        client.initiate()
    with pytest.raises(ProtocolError, match="RTMP S0 version 72"):
        client.receive_data(b"HTTP/1.1 400")


def test_create_stream_result_without_a_stream_id() -> None:
    client, _ = handshaken_client()
    client.receive_data(cmd("_result", 1, {}, {}))
    with pytest.raises(ProtocolError, match="createStream result carries no valid stream id: None"):
        client.receive_data(cmd("_result", 4, None))


def test_client_window_ack_size_can_change_once_the_bitrate_is_known() -> None:
    client, peer = published_client()
    client.set_window_ack_size(64_000)
    out = peer.read(client.data_to_send())
    assert [(m.type_id, control.parse_u32(m.payload, "window")) for m in out] == [
        (chunk.WINDOW_ACK_SIZE, 64_000)
    ]
    assert client.window_ack_size == 64_000
    early = ClientSession("live", "out1", "rtmp://dest/live")
    early.set_window_ack_size(32_000)  # before connect: sent with connect's result instead
    assert early.data_to_send() == b"" and early.window_ack_size == 32_000
    with pytest.raises(ValueError, match="outside"):
        client.set_window_ack_size(0)
