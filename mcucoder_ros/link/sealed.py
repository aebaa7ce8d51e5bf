"""Serial protocol 2: the sealed link (docs/serial-protocol.md, "Protocol 2").

With a pre-shared 256-bit device key, every packet after a handshake travels inside a
SEALED packet, encrypted and authenticated with ChaCha20-Poly1305 (RFC 8439):

    SEALED payload = counter u32 LE | ciphertext of (inner type u8 | inner payload) | tag[16]
    AEAD key       = the session key of the direction (device->host or host->device)
    AEAD nonce     = counter u32 LE | b"MCUCODER"
    AEAD AAD       = the outer packet type (1 byte)

Handshake: the device's HELLO (protocol 2) carries a fresh device nonce Nd; the host
answers KEY_EXCHANGE with its random nonce Nh and a proof of the key; both derive

    K1           = ChaCha20Block(device key, counter = Nd[0:4], nonce = Nd[4:16])[0:32]
    K_up | K_down = ChaCha20Block(K1, counter = Nh[0:4], nonce = Nh[4:16])          (64 bytes)

(a cascade of the ChaCha20 block function used as a PRF), so every connection has keys
of its own and a recording of one cannot be replayed into another.  The device answers
with SESSION_OK sealed under counter 0.  Within a session each direction's counter
only grows; the host keeps a window of 64 for the device's packets, the device accepts
only counters above the last one.  This module is the host side (and, for tests, a
reference device side); it is pure: no I/O but the key files.
"""
from __future__ import annotations

import dataclasses
import os
import stat
import struct
from dataclasses import dataclass, field
from pathlib import Path

from . import serial_protocol as sp


def _crypto():
    """`cryptography`, imported when a key is used: protocol 1 needs nothing of it."""
    try:
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
        from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
    except ImportError as e:
        raise ImportError("the sealed serial link needs the Python package cryptography (pip install "
                          "cryptography, or rosdep's python3-cryptography)") from e
    return InvalidTag, Cipher, algorithms, ChaCha20Poly1305

KEY_BYTES, NONCE_BYTES, TAG_BYTES = 32, 16, 16
NONCE_TAIL = b"MCUCODER"
HANDSHAKE_AAD = b"mcucoder-link-2"
WINDOW = 64

# packet types of protocol 2 (beside protocol 1's)
SESSION_OK = 0x07          # device -> host, only inside SEALED_UP, counter 0
SEALED_UP = 0x10           # device -> host
KEY_EXCHANGE = 0x85        # host -> device: Nh[16] | proof tag[16]
PROVISION_KEY = 0x86       # host -> device: key[32]; only while the device has no key
SEALED_DOWN = 0x90         # host -> device
SEAL_OVERHEAD = 4 + 1 + TAG_BYTES


class KeyFileError(ValueError):
    pass


class Rejected(ValueError):
    """A packet the sealed link does not accept; `cause` names the counter it goes to."""

    def __init__(self, cause: str, detail: str):
        super().__init__(detail)
        self.cause = cause


def read_key_file(path) -> bytes:
    """A key file: the 32-byte key as 64 hex digits on one line, readable by its owner only."""
    p = Path(path)
    try:
        st = p.stat()
        text = p.read_text()
    except OSError as e:
        raise KeyFileError(f"cannot read link key file {p}: {e.strerror or e}") from e
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(f"link key file {p} is open to other users (mode {stat.S_IMODE(st.st_mode):o}); "
                           f"anyone who can read it can read and forge the camera's link: chmod 600 {p}")
    digits = text.strip()
    try:
        key = bytes.fromhex(digits)
    except ValueError:
        key = b""
    if len(key) != KEY_BYTES or "\n" in digits:
        raise KeyFileError(f"link key file {p} must hold 64 hex digits (a 32-byte key) on one line; "
                           f"make one with: mcucoder-ros keygen {p}")
    return key


def write_key_file(path, key: bytes | None = None) -> bytes:
    """A new random key (or `key`), written owner-only; never overwrites a file."""
    key = os.urandom(KEY_BYTES) if key is None else key
    if len(key) != KEY_BYTES:
        raise KeyFileError(f"a link key is {KEY_BYTES} bytes, not {len(key)}")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as e:
        raise KeyFileError(f"{path} exists; not overwriting a key (a device provisioned with it would be "
                           f"locked out)") from e
    with os.fdopen(fd, "w") as f:
        f.write(key.hex() + "\n")
    return key


def prf_block(key: bytes, inp: bytes) -> bytes:
    """The ChaCha20 block function keyed by `key` on a 16-byte input (counter | nonce)."""
    _, Cipher, algorithms, _ = _crypto()
    enc = Cipher(algorithms.ChaCha20(key, inp), mode=None).encryptor()
    return enc.update(bytes(64))


def session_keys(key: bytes, device_nonce: bytes, host_nonce: bytes) -> tuple[bytes, bytes]:
    """(device->host key, host->device key) of the connection with these nonces."""
    k1 = prf_block(key, device_nonce)[:32]
    k = prf_block(k1, host_nonce)
    return k[:32], k[32:]


def nonce(counter: int) -> bytes:
    return struct.pack("<I", counter) + NONCE_TAIL


def proof(down_key: bytes, device_nonce: bytes, host_nonce: bytes) -> bytes:
    """KEY_EXCHANGE's proof that the host holds the key: the tag of an empty message."""
    return _crypto()[3](down_key).encrypt(nonce(0), b"", HANDSHAKE_AAD + device_nonce + host_nonce)


def seal(key: bytes, outer: int, counter: int, inner: int, payload: bytes) -> bytes:
    """One SEALED packet's payload."""
    ct = _crypto()[3](key).encrypt(nonce(counter), bytes([inner]) + payload, bytes([outer]))
    return struct.pack("<I", counter) + ct


def open_sealed(key: bytes, outer: int, payload: bytes) -> tuple[int, sp.Packet]:
    """(counter, inner packet) of a SEALED payload; Rejected if it does not authenticate."""
    if len(payload) < SEAL_OVERHEAD:
        raise Rejected("malformed", f"sealed packet of {len(payload)} bytes is too short")
    counter = struct.unpack_from("<I", payload)[0]
    InvalidTag, _, _, ChaCha20Poly1305 = _crypto()
    try:
        pt = ChaCha20Poly1305(key).decrypt(nonce(counter), payload[4:], bytes([outer]))
    except InvalidTag:
        raise Rejected("bad_tag", "sealed packet does not authenticate (altered, forged, or from another "
                                  "session)") from None
    return counter, sp.Packet(pt[0], pt[1:])


@dataclass
class ReplayWindow:
    """Counters seen, within WINDOW of the highest: each accepted once."""
    highest: int = -1
    seen: int = 0           # bit i: highest - i was accepted

    def check(self, counter: int) -> None:
        if counter > self.highest:
            return
        age = self.highest - counter
        if age >= WINDOW or self.seen >> age & 1:
            raise Rejected("replay", f"counter {counter} already seen or too old (highest {self.highest})")

    def accept(self, counter: int) -> None:
        if counter > self.highest:
            shift = counter - self.highest
            self.seen = ((self.seen << shift) | 1) & ((1 << WINDOW) - 1) if shift < WINDOW else 1
            self.highest = counter
        else:
            self.seen |= 1 << (self.highest - counter)


class HostLink:
    """The host's end of one device link: plain protocol 1 without a key, the sealed
    protocol 2 with one.  Feed it parsed packets; it returns the inner packets that may
    reach the frame assembler and the bytes to write back to the device.  Rejected
    packets are counted by cause in `rejected`; nothing of them passes."""

    def __init__(self, key: bytes | None, rng=os.urandom):
        if key is not None:
            _crypto()                   # a clear error now, not in the reader thread later
        self.key, self.rng = key, rng
        self.down_key = self.up_key = None
        self.device_nonce = self.host_nonce = b""
        self.confirmed = False          # SESSION_OK received
        self.window = ReplayWindow()
        self.tx_counter = 1
        self.error: str | None = None   # why frames are refused (policy), for the node's log
        self.sessions = 0
        self.rejected = {"bad_tag": 0, "replay": 0, "unsealed": 0, "malformed": 0, "no_session": 0}

    @property
    def sealed(self) -> bool:
        return self.key is not None

    def on_packet(self, pkt: sp.Packet) -> tuple[list[sp.Packet], list[bytes]]:
        if pkt.type == sp.HELLO:
            return self._on_hello(pkt)
        if not self.sealed:
            if pkt.type == SEALED_UP:
                self.rejected["no_session"] += 1
                return [], []
            return ([pkt], []) if self.error is None else ([], [])
        if pkt.type != SEALED_UP:
            self.rejected["unsealed"] += 1          # plain data from a keyed link: never trusted
            return [], []
        if self.up_key is None:
            self.rejected["no_session"] += 1
            return [], []
        try:
            counter, inner = open_sealed(self.up_key, SEALED_UP, pkt.payload)
            self.window.check(counter)
        except Rejected as e:
            self.rejected[e.cause] += 1
            return [], []
        self.window.accept(counter)
        if inner.type == SESSION_OK:
            if counter != 0:
                self.rejected["malformed"] += 1
                return [], []
            self.confirmed = True
            return [], []
        if not self.confirmed or inner.type in (sp.HELLO, SEALED_UP):
            self.rejected["malformed"] += 1
            return [], []
        return [inner], []

    def _on_hello(self, pkt: sp.Packet) -> tuple[list[sp.Packet], list[bytes]]:
        version = pkt.payload[0] if pkt.payload else 0
        if self.sealed and version == 1:
            self.error = ("device speaks the unsealed serial protocol 1, but this bridge has a link key: refusing "
                          "its frames (anyone could forge them). Provision the device with the key, or run the "
                          "bridge without link_key_file")
            self.down_key = self.up_key = None
            return [pkt], []
        if not self.sealed and version == 2:
            self.error = ("device seals its link (serial protocol 2): give the bridge the device's key "
                          "(link_key_file, or --link-key)")
            return [pkt], []
        self.error = None
        if version != 2:
            return [pkt], []
        try:
            hello = sp.Hello.parse(pkt.payload)
        except sp.ProtocolError:
            return [pkt], []
        if hello.device_nonce == self.device_nonce and self.up_key is not None:
            return [pkt], []            # the same HELLO again (the device repeats it until the exchange)
        # a new HELLO is a new connection: new nonces, new keys, counters from the start
        self.device_nonce, self.host_nonce = hello.device_nonce, self.rng(NONCE_BYTES)
        self.up_key, self.down_key = session_keys(self.key, self.device_nonce, self.host_nonce)
        self.window, self.tx_counter, self.confirmed = ReplayWindow(), 1, False
        self.sessions += 1
        reply = sp.encode_packet(KEY_EXCHANGE, self.host_nonce + proof(self.down_key, self.device_nonce,
                                                                        self.host_nonce))
        return [pkt], [reply]

    def command(self, ptype: int, payload: bytes = b"") -> bytes | None:
        """A host command as bytes for the link: sealed on a keyed link (None until there
        is a session: a command sent in the clear would be refused by the device)."""
        if not self.sealed or ptype == sp.REQUEST_HELLO:
            return sp.encode_packet(ptype, payload)
        if self.down_key is None:
            return None
        out = sp.encode_packet(SEALED_DOWN, seal(self.down_key, SEALED_DOWN, self.tx_counter, ptype, payload))
        self.tx_counter += 1
        return out


@dataclass
class DeviceLink:
    """The device's end, in Python: the reference the firmware (core/mcu_link.c) follows,
    and a device for tests over ptys.  `nonce_source()` gives each HELLO its nonce."""
    key: bytes | None
    nonce_source: object = field(default=lambda: os.urandom(NONCE_BYTES))
    up_key: bytes | None = None
    down_key: bytes | None = None
    device_nonce: bytes = b""
    tx_counter: int = 0
    rx_highest: int = 0
    rejected: dict = field(default_factory=lambda: {"bad_tag": 0, "replay": 0, "unsealed": 0, "malformed": 0})

    def hello_payload(self, hello: sp.Hello) -> bytes:
        if self.key is None:
            return hello.pack()
        self.device_nonce = self.nonce_source()
        return dataclasses.replace(hello, protocol=2, device_nonce=self.device_nonce).pack()

    def packet(self, ptype: int, payload: bytes) -> bytes:
        if self.up_key is None or ptype == sp.HELLO:
            return sp.encode_packet(ptype, payload)
        out = sp.encode_packet(SEALED_UP, seal(self.up_key, SEALED_UP, self.tx_counter, ptype, payload))
        self.tx_counter += 1
        return out

    def on_command(self, pkt: sp.Packet) -> tuple[sp.Packet | None, bytes]:
        """(command to obey or None, bytes to send back)."""
        if self.key is None or pkt.type == sp.REQUEST_HELLO:
            return pkt, b""
        if pkt.type == KEY_EXCHANGE and len(pkt.payload) == 2 * NONCE_BYTES and self.device_nonce:
            nh, tag = pkt.payload[:NONCE_BYTES], pkt.payload[NONCE_BYTES:]
            up, down = session_keys(self.key, self.device_nonce, nh)
            if proof(down, self.device_nonce, nh) != tag:
                self.rejected["bad_tag"] += 1
                return None, b""
            self.up_key, self.down_key, self.tx_counter, self.rx_highest = up, down, 0, 0
            self.device_nonce = b""             # one session per HELLO
            return None, self.packet(SESSION_OK, b"")
        if pkt.type != SEALED_DOWN or self.down_key is None:
            self.rejected["unsealed"] += 1
            return None, b""
        try:
            counter, inner = open_sealed(self.down_key, SEALED_DOWN, pkt.payload)
        except Rejected as e:
            self.rejected[e.cause] += 1
            return None, b""
        if counter <= self.rx_highest:
            self.rejected["replay"] += 1
            return None, b""
        self.rx_highest = counter
        return inner, b""
