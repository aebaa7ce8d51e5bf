import random

import pytest
from conftest import VECTORS
from hypothesis import given, settings
from hypothesis import strategies as st

from mcucoder_ros.codec import bitstream
from mcucoder_ros.link import serial_protocol as sp
from mcucoder_ros.link.frames import FrameAssembler
from mcucoder_ros.link.vectors import DEVICE_FIELDS, SIZED_FIELDS, device_stream, device_stream_sized, host_stream


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


def test_golden_sized_stream_is_current_and_assembles_to_the_picture_size():
    """Firmware 1.1 at a camera size other than 224x224: the 17-byte FRAME_HEADER carries
    the picture's width and height (bitstream v3); the host assembles a 352x288 frame whose
    chunks are those of the sized golden vector, and reads the DEVICE_ERROR's text."""
    data = (VECTORS / "serial_device_sized.bin").read_bytes()
    assert data == device_stream_sized((VECTORS / "sized" / "traffic.mcf").read_bytes())
    pk = sp.StreamParser().feed(data)
    assert [x.type for x in pk] == [sp.HELLO, sp.FRAME_HEADER, sp.CHUNK, sp.CHUNK, sp.FRAME_END, sp.DEVICE_ERROR]
    fh = sp.FrameHeader.parse(pk[1].payload)
    assert len(pk[1].payload) == 17 and (fh.width, fh.height, fh.version) == (352, 288, 3)
    asm, frames = FrameAssembler(), []
    for x in pk:
        frames += asm.on_packet(x)
    ref = bitstream.unpack((VECTORS / "sized" / "traffic.mcf").read_bytes())
    assert len(frames) == 1 and frames[0].complete
    f = frames[0].frame
    assert f.size == (352, 288) and f.chunks == ref.chunks[:2] and f.version == 3
    assert bitstream.unpack(bitstream.pack(f)).size == (352, 288)
    assert asm.device_error and SIZED_FIELDS["device_error"][1] in asm.device_error and asm.errors["protocol"] == 0
    # the 13-byte form stays what every 224x224 device sends
    assert sp.FrameHeader(*DEVICE_FIELDS["frame_header"]).pack() == sp.FRAME_HEADER_FMT.pack(
        *DEVICE_FIELDS["frame_header"])


@pytest.mark.parametrize("payload_len", [0, 12, 16, 18])
def test_frame_header_of_a_wrong_length_or_size_is_refused(payload_len):
    """Any other FRAME_HEADER length, or a size the codec does not take, or latent fields
    that do not follow from the size: a protocol error, counted, no frame."""
    asm = FrameAssembler()
    asm.on_packet(sp.Packet(sp.HELLO, sp.Hello(**DEVICE_FIELDS["hello"]).pack()))
    asm.on_packet(sp.Packet(sp.FRAME_HEADER, bytes(payload_len)))
    assert asm.errors["protocol"] == 1 and asm.pending is None
    for bad in ((1, 1, 12, 36, 44, 1, 3, 352, 288 + 8), (1, 1, 12, 250, 250, 1, 3, 4000, 3000),
                (1, 1, 12, 36, 44, 1, 1, 352, 288)):      # latent mismatch; too big; v1 at 352x288
        asm.on_packet(sp.Packet(sp.FRAME_HEADER, sp.FRAME_HEADER_SIZED_FMT.pack(*bad)))
    assert asm.errors["protocol"] == 4 and asm.pending is None


def test_largest_chunk_fits_a_packet():
    """A chunk of the largest picture (1920x1088) with its CHUNK_INTER header and the seal
    fits the payload limit, and crosses the framing."""
    from mcucoder_ros.codec.entropy import MAX_CHUNK_BYTES_ANY
    payload = bytes(random.Random(3).randrange(256) for _ in range(MAX_CHUNK_BYTES_ANY + 6))
    assert len(payload) + 21 <= sp.MAX_PAYLOAD
    assert sp.StreamParser().feed(sp.encode_packet(sp.CHUNK_INTER, payload)) == [sp.Packet(sp.CHUNK_INTER, payload)]


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


def test_scaled_frame_header_and_budget_with_scale():
    """Firmware 1.2: SET_BUDGET's optional scale byte, and the 18-byte FRAME_HEADER of a
    scaled frame (version 4: the camera's size, the latent of the coded picture)."""
    assert sp.set_budget(5) == sp.encode_packet(sp.SET_BUDGET, b"\x05")
    assert sp.StreamParser().feed(sp.set_budget(5, 2))[0].payload == b"\x05\x02"
    fh = sp.FrameHeader(3, 30, 12, 9, 11, 4, 4, 352, 288, 2)     # 352x288 at 1/4: 88x72, latent 9x11
    assert len(fh.pack()) == 18 and sp.FrameHeader.parse(fh.pack()) == fh
    asm = FrameAssembler()
    asm.on_packet(sp.Packet(sp.HELLO, sp.Hello(**dict(DEVICE_FIELDS["hello"], firmware_version=0x0102)).pack()))
    asm.on_packet(sp.Packet(sp.FRAME_HEADER, fh.pack()))
    assert asm.errors["protocol"] == 0 and asm.pending.scale_shift == 2
    bad = sp.FrameHeader(4, 30, 12, 36, 44, 4, 4, 352, 288, 2)   # latent of the camera's size, not the coded one
    asm.on_packet(sp.Packet(sp.FRAME_HEADER, bad.pack()))
    assert asm.errors["protocol"] == 1
