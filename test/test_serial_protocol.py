import random

import pytest
from conftest import VECTORS
from hypothesis import given, settings
from hypothesis import strategies as st

from mcucoder_ros.codec import bitstream
from mcucoder_ros.link import serial_protocol as sp
from mcucoder_ros.link.vectors import DEVICE_FIELDS, device_stream, host_stream


def test_golden_vectors_are_current():
    assert (VECTORS / "serial_device.bin").read_bytes() == device_stream((VECTORS / "astronaut.mcf").read_bytes())
    assert (VECTORS / "serial_host.bin").read_bytes() == host_stream()


def test_golden_device_stream_parses():
    p = sp.StreamParser()
    pk = p.feed((VECTORS / "serial_device.bin").read_bytes())
    assert [x.type for x in pk] == [sp.HELLO, sp.FRAME_HEADER, sp.CHUNK, sp.CHUNK, sp.FRAME_END, sp.STATUS]
    assert sp.Hello.parse(pk[0].payload).model_id == DEVICE_FIELDS["hello"]["model_id"]
    f = bitstream.unpack((VECTORS / "astronaut.mcf").read_bytes())
    assert sp.parse_chunk(pk[3].payload) == (7, 1, f.chunks[1])


def test_crc_and_cobs():
    assert sp.crc16(b"123456789") == 0x29B1            # CRC-16/CCITT-FALSE check value
    rng = random.Random(0)
    for n in (0, 1, 253, 254, 255, 508, 1205):
        d = bytes(rng.choice([0, rng.randrange(256)]) for _ in range(n))
        e = sp.cobs_encode(d)
        assert 0 not in e and sp.cobs_decode(e) == d


def test_resync_after_corruption():
    good = sp.encode_packet(sp.CHUNK, b"\x01\0\0\0\x02" + bytes(range(200)))
    bad = bytearray(good)
    bad[20] ^= 0x10
    p = sp.StreamParser()
    out = p.feed(b"\xff\x13garbage\x00" + bytes(bad) + good + good[:30]) + p.feed(good[30:])
    assert len(out) == 2 and p.crc_errors == 1 and p.framing_errors >= 1


def test_version_negotiation_is_explicit():
    hello = sp.Hello(**DEVICE_FIELDS["hello"]).pack()
    with pytest.raises(sp.ProtocolError, match=r"version 3.*understands versions \(1, 2\)"):
        sp.Hello.parse(bytes([3]) + hello[1:])
    with pytest.raises(sp.ProtocolError, match="HELLO of 20 bytes, expected 36"):     # 2 carries a nonce
        sp.Hello.parse(bytes([2]) + hello[1:])
    assert sp.Hello.parse(bytes([2]) + hello[1:] + bytes(range(16))).device_nonce == bytes(range(16))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=8))
def test_parser_never_raises_and_stays_bounded(chunks):
    p = sp.StreamParser()
    good = sp.encode_packet(sp.STATUS, sp.STATUS_FMT.pack(1, 2, 3, 4, 5, 6))
    for c in chunks:
        p.feed(c)
        assert len(p.buf) <= sp.MAX_ENCODED
    assert [x.type for x in p.feed(b"\x00" + good)] == [sp.STATUS]   # always recovers


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=0, max_size=sp.MAX_PAYLOAD), st.integers(0, 255))
def test_round_trip_any_payload(payload, ptype):
    assert sp.StreamParser().feed(sp.encode_packet(ptype, payload)) == [sp.Packet(ptype, payload)]
