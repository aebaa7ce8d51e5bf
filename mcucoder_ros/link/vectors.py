"""Golden serial-protocol vectors shared by the Python and C tests (test/vectors/serial_*).

serial_device.bin: HELLO, FRAME_HEADER, the first two channel CHUNKs of
astronaut.mcf, FRAME_END and STATUS, with the field values listed in DEVICE_FIELDS.
serial_host.bin: SET_BUDGET 5, SET_FPS 7.5, REQUEST_STATUS, a corrupted SET_BUDGET
(CRC broken, must be counted and ignored), REQUEST_HELLO.
serial_device_sized.bin: a frame of another size than 224x224 (firmware 1.1): HELLO, the
17-byte FRAME_HEADER (bitstream version 3, the picture's width and height), the first two
CHUNKs of sized/traffic.mcf (352x288), FRAME_END, and a DEVICE_ERROR (a camera above the
firmware's maximum), with the values of SIZED_FIELDS.
"""
from __future__ import annotations

import sys
from pathlib import Path

from ..codec import bitstream
from . import serial_protocol as sp

DEVICE_FIELDS = {
    "hello": {"protocol": 1, "firmware_version": 0x0100, "model_id": 0x0E91BF51, "target": 1, "ram_static": 380000,
                  "stack_peak": 1024, "flash": 90000},
    "frame_header": (7, 123456, 12, 28, 28, 2, 1),
    "frame_end": (7, 4242),
    "status": (8, 99999, 3, 5, 750, 12345),
}


SIZED_FIELDS = {
    "hello": dict(DEVICE_FIELDS["hello"], firmware_version=0x0101),
    "frame_header": (9, 654321, 12, 36, 44, 2, 3, 352, 288),
    "frame_end": (9, 4343),
    "device_error": (1, "camera picture 800x600 is outside what this firmware codes: each side 8 or more, at most "
                        "640x480 (build it with MCU_MAX_WIDTH / MCU_MAX_HEIGHT)"),
}


def device_stream_sized(mcf: bytes) -> bytes:
    f = bitstream.unpack(mcf)
    out = sp.encode_packet(sp.HELLO, sp.Hello(**SIZED_FIELDS["hello"]).pack())
    out += sp.encode_packet(sp.FRAME_HEADER, sp.FrameHeader(*SIZED_FIELDS["frame_header"]).pack())
    for c in (0, 1):
        out += sp.encode_packet(sp.CHUNK, sp.CHUNK_HEAD_FMT.pack(9, c) + f.chunks[c])
    out += sp.encode_packet(sp.FRAME_END, sp.FRAME_END_FMT.pack(*SIZED_FIELDS["frame_end"]))
    code, text = SIZED_FIELDS["device_error"]
    return out + sp.encode_packet(sp.DEVICE_ERROR, bytes([code]) + text.encode())


def device_stream(mcf: bytes) -> bytes:
    f = bitstream.unpack(mcf)
    out = sp.encode_packet(sp.HELLO, sp.Hello(**DEVICE_FIELDS["hello"]).pack())
    out += sp.encode_packet(sp.FRAME_HEADER, sp.FRAME_HEADER_FMT.pack(*DEVICE_FIELDS["frame_header"]))
    for c in (0, 1):
        out += sp.encode_packet(sp.CHUNK, sp.CHUNK_HEAD_FMT.pack(7, c) + f.chunks[c])
    out += sp.encode_packet(sp.FRAME_END, sp.FRAME_END_FMT.pack(*DEVICE_FIELDS["frame_end"]))
    out += sp.encode_packet(sp.STATUS, sp.STATUS_FMT.pack(*DEVICE_FIELDS["status"]))
    return out


def host_stream() -> bytes:
    bad = bytearray(sp.set_budget(9))
    bad[2] ^= 0x40
    return sp.set_budget(5) + sp.set_fps(7.5) + sp.request_status() + bytes(bad) + sp.request_hello()


def write(vdir: str) -> None:
    d = Path(vdir)
    (d / "serial_device.bin").write_bytes(device_stream((d / "astronaut.mcf").read_bytes()))
    (d / "serial_host.bin").write_bytes(host_stream())
    (d / "serial_device_sized.bin").write_bytes(device_stream_sized((d / "sized" / "traffic.mcf").read_bytes()))


if __name__ == "__main__":
    write(sys.argv[1] if len(sys.argv) > 1 else "test/vectors")
