"""The plain RTMP handshake: byte layout, echoes, leftovers and version checks."""

from __future__ import annotations

import pytest

from shared.rtmp.errors import ProtocolError
from shared.rtmp.handshake import PACKET_SIZE, ClientHandshake, ServerHandshake

RANDOM = bytes(range(256)) * 5 + bytes(248)  # 1528 bytes


def c0c1(version: int = 3) -> bytes:
    return bytes((version,)) + b"\x00\x00\x00\x07" + b"\x09\x00\x7c\x02" + bytes(i % 251 for i in range(1528))


def test_server_answers_c0_c1_with_s0_s1_s2() -> None:
    server = ServerHandshake(random=RANDOM)
    hello = c0c1()
    server.receive_data(hello)
    out = server.data_to_send()
    assert len(out) == 1 + 2 * PACKET_SIZE
    assert out[0] == 3
    s1 = out[1 : 1 + PACKET_SIZE]
    assert s1[:8] == bytes(8)  # time 0 and the zero field that means "no digest"
    assert s1[8:] == RANDOM
    assert out[1 + PACKET_SIZE :] == hello[1:]  # S2 echoes C1
    assert not server.done


def test_server_is_done_after_c2_and_keeps_the_chunk_stream_bytes() -> None:
    server = ServerHandshake()
    server.receive_data(c0c1())
    server.receive_data(bytes(PACKET_SIZE - 1))
    assert not server.done
    server.receive_data(b"\x00" + b"\x03connect")
    assert server.done
    assert server.leftover == b"\x03connect"


def test_server_handles_byte_by_byte_input() -> None:
    server = ServerHandshake()
    data = c0c1() + bytes(PACKET_SIZE) + b"tail"
    for i in range(len(data) - 4):
        server.receive_data(data[i : i + 1])
    assert server.done
    assert server.leftover == b""
    assert len(server.data_to_send()) == 1 + 2 * PACKET_SIZE


@pytest.mark.parametrize("first", [b"\x06", b"\x00", b"GET / HTTP/1.1\r\n", b"\x16\x03\x01"])
def test_server_rejects_other_versions_on_the_first_byte(first: bytes) -> None:
    server = ServerHandshake()
    with pytest.raises(ProtocolError, match=f"RTMP C0 version {first[0]} is not supported"):
        server.receive_data(first)


def test_client_sends_c0_c1_then_c2_echoing_s1() -> None:
    client = ClientHandshake(random=RANDOM)
    client.initiate()
    hello = client.data_to_send()
    assert len(hello) == 1 + PACKET_SIZE
    assert hello[0] == 3
    assert hello[1:9] == bytes(8)
    s1 = b"\x00\x00\x00\x01" + bytes(4) + bytes(range(8, 255)) * 6 + bytes(1528 - 247 * 6)
    client.receive_data(b"\x03" + s1)
    assert client.data_to_send() == s1  # C2
    assert not client.done
    client.receive_data(hello[1:] + b"\x02rest")  # S2
    assert client.done
    assert client.leftover == b"\x02rest"


def test_client_rejects_server_version() -> None:
    client = ClientHandshake()
    client.initiate()
    with pytest.raises(ProtocolError, match="RTMP S0 version 6"):
        client.receive_data(b"\x06" + bytes(PACKET_SIZE))


def test_client_must_initiate_first_and_only_once() -> None:
    client = ClientHandshake()
    with pytest.raises(RuntimeError, match="before initiate"):
        client.receive_data(b"\x03")
    client.initiate()
    with pytest.raises(RuntimeError, match="already started"):
        client.initiate()


def test_client_and_server_complete_against_each_other() -> None:
    client, server = ClientHandshake(), ServerHandshake()
    client.initiate()
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    server.receive_data(client.data_to_send())
    assert client.done and server.done
    assert client.leftover == server.leftover == b""


def test_random_must_have_the_right_size() -> None:
    with pytest.raises(ValueError, match="1528 bytes"):
        ServerHandshake(random=b"short").receive_data(c0c1())
