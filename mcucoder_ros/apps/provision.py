"""`mcucoder-ros provision`: give a device without a key its sealed-link key, once, over
the serial line (docs/serial-protocol.md, "Keys and provisioning").

Nothing the line says triggers it: an operator runs it for one device, naming that
device's identity (its 16-byte serial number, from its label or console).  The command
asks the device on the port for its identity (REQUEST_IDENTITY), shows it, and sends
PROVISION_KEY (addressed to that identity; the device refuses a key for another) only when
it equals --device-id; then it checks that the device now speaks the sealed protocol with
this key.  The key crosses the wire in the clear: run it on a wire you trust.
"""
from __future__ import annotations

import time

from ..link import sealed
from ..link import serial_protocol as sp


def _packets(ser, parser, until, timeout):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        for pkt in parser.feed(ser.read(4096)):
            r = until(pkt)
            if r is not None:
                return r
    return None


def provision(port: str, key_file: str, device_id: str | None, timeout: float = 10.0, baudrate: int = 921600,
              log=print) -> bytes:
    """Provisions the device on `port`; returns its identity.  Raises RuntimeError (nothing
    sent) unless the device has no key and its identity is `device_id`."""
    import serial

    key = sealed.read_key_file(key_file)
    want = None
    if device_id is not None:
        try:
            want = bytes.fromhex(device_id.replace(":", "").replace("-", ""))
        except ValueError:
            want = b""
        if len(want) != sealed.DEVICE_ID_BYTES:
            raise ValueError(f"--device-id must be {2 * sealed.DEVICE_ID_BYTES} hex digits, not {device_id!r}")
    t0 = time.monotonic()
    while True:                         # a socket URL may take a moment to listen (QEMU starting)
        try:
            ser = serial.serial_for_url(port, baudrate=baudrate, timeout=0.1)
            break
        except serial.SerialException:
            if time.monotonic() - t0 > timeout:
                raise
            time.sleep(0.1)
    parser = sp.StreamParser()
    try:
        ser.write(sp.request_hello())
        hello = _packets(ser, parser, lambda p: p if p.type == sp.HELLO else None, timeout)
        if hello is None:
            raise RuntimeError(f"no HELLO from {port} in {timeout:g} s: nothing sent")
        if hello.payload[:1] == b"\x02":
            raise RuntimeError("the device on this port already has a key (it speaks the sealed protocol 2): a key "
                               "cannot be replaced over the link; nothing sent")
        ser.write(sp.encode_packet(sealed.REQUEST_IDENTITY))
        ident = _packets(ser, parser, lambda p: p.payload if p.type == sealed.IDENTITY
                         and len(p.payload) == sealed.DEVICE_ID_BYTES else None, timeout)
        if ident is None:
            raise RuntimeError(f"the device on {port} did not say its identity (REQUEST_IDENTITY): its firmware "
                               "predates provisioning by identity; nothing sent")
        log(f"device on {port}: identity {ident.hex()}")
        if want is None:
            raise RuntimeError(f"nothing sent: check that {ident.hex()} is the serial number of the device you mean "
                               f"(its label or console), then run again with --device-id {ident.hex()}")
        if ident != want:
            raise RuntimeError(f"the device on {port} is {ident.hex()}, not {want.hex()}: nothing sent (another "
                               "device, or someone on the wire)")
        ser.write(sealed.provision_packet(ident, key))
        # the device answers with a HELLO of protocol 2; prove the key with a handshake
        link = sealed.HostLink(key)
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout and not link.confirmed:
            for r in link.poll():
                ser.write(r)
            for pkt in parser.feed(ser.read(4096)):
                for r in link.on_packet(pkt)[1]:
                    ser.write(r)
        if not link.confirmed:
            raise RuntimeError(f"sent the key to {ident.hex()}, but it did not open a sealed session with it in "
                               f"{timeout:g} s (refused: wrong identity, or its storage failed)")
        log(f"provisioned {ident.hex()}: it seals its link with {key_file}'s key (protocol 2)")
        return ident
    finally:
        ser.close()


def main(a) -> int:
    provision(a.port, a.key, a.device_id, a.timeout, a.baudrate)
    return 0
