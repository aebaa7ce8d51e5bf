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

The handshake always recovers (issue 29): the host answers every HELLO with an exchange
of a fresh host nonce, keeps the session it has until a new one is proven (a packet that
authenticates under the new keys), and asks for a new HELLO while an exchange goes
unanswered (`HostLink.poll`).  A HELLO of protocol 1 never tears down a session, and the
host never sends its key: provisioning is an operator's command (`mcucoder-ros provision`).
"""
from __future__ import annotations

import dataclasses
import os
import stat
import struct
import time
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
IDENTITY = 0x08            # device -> host, in the clear, from a device without a key: device id[16]
SEALED_UP = 0x10           # device -> host
KEY_EXCHANGE = 0x85        # host -> device: Nh[16] | proof tag[16]
PROVISION_KEY = 0x86       # host -> device: device id[16] | key[32]; only a device without a key, only its own id
REQUEST_IDENTITY = 0x87    # host -> device, in the clear: a device without a key answers IDENTITY
SEALED_DOWN = 0x90         # host -> device
SEAL_OVERHEAD = 4 + 1 + TAG_BYTES
DEVICE_ID_BYTES = 16
NO_NONCE = bytes(NONCE_BYTES)   # a device that cannot draw a fresh nonce offers this, and takes no exchange
# send counters: ask for new keys from REKEY_AT on, never seal at or past TX_LIMIT (firmware: mcu_link.h)
REKEY_AT, TX_LIMIT = 0x80000000, 0xFFFFFF00
# handshake timers of the host (seconds)
RETRY_S = 0.5              # an exchange unanswered this long: ask for a new HELLO (and again as long as it lasts)
IDLE_S = 1.0               # no session and nothing pending: ask for a HELLO this often
PENDING_TTL_S = 3.0        # an exchange is forgotten after this long
PENDING_MAX = 4            # exchanges awaiting proof at once (a forged HELLO cannot displace the real one)


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
        raw = p.read_bytes()
    except OSError as e:
        raise KeyFileError(f"cannot read link key file {p}: {e.strerror or e}") from e
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(f"link key file {p} is open to other users (mode {stat.S_IMODE(st.st_mode):o}); "
                           f"anyone who can read it can read and forge the camera's link: chmod 600 {p}")
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise KeyFileError(f"link key file {p} is not text (a binary key?): it must hold 64 hex digits (a 32-byte "
                           f"key) on one line; make one with: mcucoder-ros keygen {p}.new") from None
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


@dataclass
class Exchange:
    """One handshake with the device: its HELLO, the nonces, the keys they give."""
    hello: sp.Packet
    device_nonce: bytes
    host_nonce: bytes
    up_key: bytes
    down_key: bytes
    started: float
    packet: bytes = b""             # the KEY_EXCHANGE sent, as bytes


class HostLink:
    """The host's end of one device link: plain protocol 1 without a key, the sealed
    protocol 2 with one.  Feed it parsed packets; it returns the inner packets that may
    reach the frame assembler and the bytes to write back to the device.  Rejected
    packets are counted by cause in `rejected`; nothing of them passes.

    Handshakes: every HELLO of protocol 2 gets an exchange with a fresh host nonce (a
    few are kept awaiting proof, PENDING_MAX); the session in use stays until a packet
    authenticates under one of them (SESSION_OK, or any sealed packet: only the device
    with the key can make it), which then becomes the session.  `poll(now)` gives the
    REQUEST_HELLOs that keep the handshake going: RETRY_S after an unanswered exchange,
    and every IDLE_S while there is no session at all.  A HELLO is passed on (to the
    frame assembler) once its session is proven, never before."""

    def __init__(self, key: bytes | None, rng=os.urandom, clock=time.monotonic):
        if key is not None:
            _crypto()                   # a clear error now, not in the reader thread later
        self.key, self.rng, self.clock = key, rng, clock
        self.session: Exchange | None = None
        self.pending: list[Exchange] = []
        self.window = ReplayWindow()
        self.tx_counter = 1
        self.error: str | None = None   # why frames are refused (policy), for the node's log
        self.sessions = 0               # sessions proven
        self.exchanges = 0              # KEY_EXCHANGEs sent
        self.retries = 0                # REQUEST_HELLOs sent by poll()
        self.retry_at: float | None = None
        self.rekey_wanted = False       # our send counter is near its limit
        self.rejected = {"bad_tag": 0, "replay": 0, "unsealed": 0, "malformed": 0, "no_session": 0, "downgrade": 0}

    # the session in use (None before the first one is proven)
    @property
    def up_key(self) -> bytes | None:
        return self.session.up_key if self.session else None

    @property
    def down_key(self) -> bytes | None:
        return self.session.down_key if self.session else None

    @property
    def device_nonce(self) -> bytes:
        return self.session.device_nonce if self.session else b""

    @property
    def confirmed(self) -> bool:
        return self.session is not None

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
        if self.session is None and not self.pending:
            self.rejected["no_session"] += 1
            return [], []
        out: list[sp.Packet] = []
        try:
            counter, inner = self._open(pkt.payload)
        except Rejected as e:
            self.rejected[e.cause] += 1
            return [], []
        if counter is None:                         # proven under a pending exchange: it is the session now
            counter, inner, ex = inner
            self._promote(ex)
            out.append(ex.hello)
        self.window.accept(counter)
        if inner.type == SESSION_OK:
            if counter != 0:
                self.rejected["malformed"] += 1
            return out, []
        if inner.type in (sp.HELLO, SEALED_UP, SESSION_OK):
            self.rejected["malformed"] += 1
            return out, []
        return out + [inner], []

    def _open(self, payload: bytes):
        """(counter, inner) under the session's keys, or (None, (counter, inner, exchange))
        under a pending exchange's; Rejected if neither opens it."""
        err = Rejected("bad_tag", "no key opens it")
        if self.session is not None:
            try:
                counter, inner = open_sealed(self.session.up_key, SEALED_UP, payload)
                self.window.check(counter)
                return counter, inner
            except Rejected as e:
                err = e
                if e.cause != "bad_tag":
                    raise
        for ex in reversed(self.pending):
            try:
                counter, inner = open_sealed(ex.up_key, SEALED_UP, payload)
            except Rejected as e:
                if e.cause != "bad_tag":
                    raise
                continue
            return None, (counter, inner, ex)
        raise err

    def _promote(self, ex: Exchange) -> None:
        self.session, self.pending = ex, []
        self.window, self.tx_counter, self.rekey_wanted = ReplayWindow(), 1, False
        self.sessions += 1
        self.retry_at = None
        self.error = None

    def _on_hello(self, pkt: sp.Packet) -> tuple[list[sp.Packet], list[bytes]]:
        version = pkt.payload[0] if pkt.payload else 0
        if self.sealed and version == 1:
            # no downgrade, and no teardown: a protocol 1 HELLO on a keyed link is refused. With a
            # session it is ignored (anyone on the wire can send one); without, it says why no
            # frames come, and is passed on for the log
            self.rejected["downgrade"] += 1
            if self.session is not None:
                return [], []
            self.error = ("device speaks the unsealed serial protocol 1, but this bridge has a link key: refusing "
                          "its frames (anyone could forge them). Provision the device with the key (mcucoder-ros "
                          "provision, or at the factory), or run the bridge without link_key_file")
            return [pkt], []
        if not self.sealed and version == 2:
            self.error = ("device seals its link (serial protocol 2): give the bridge the device's key "
                          "(link_key_file, or --link-key)")
            return [pkt], []
        if not self.sealed:
            self.error = None
            return [pkt], []
        if version != 2:
            return [pkt], []                # a version no one speaks: the assembler says so
        try:
            hello = sp.Hello.parse(pkt.payload)
        except sp.ProtocolError:
            self.rejected["malformed"] += 1
            return [], []
        if hello.device_nonce == NO_NONCE:
            if self.session is None:
                self.error = ("device cannot draw a fresh nonce (it has no random generator and could not store "
                              "its boot counter): it refuses every handshake, so no session; check its storage")
            return [], []
        # every HELLO gets an exchange: the one already made for its nonce again (the device
        # repeats its HELLO until an exchange arrives: ours was lost), else one with a fresh host
        # nonce; a forged HELLO costs an exchange the device refuses. The session in use stays
        # until a new one is proven
        now = self.clock()
        self.pending = [e for e in self.pending if now - e.started < PENDING_TTL_S]
        if self.retry_at is None:
            self.retry_at = now + RETRY_S
        self.exchanges += 1
        for ex in self.pending:
            if ex.device_nonce == hello.device_nonce:
                return [], [ex.packet]
        nh = self.rng(NONCE_BYTES)
        up, down = session_keys(self.key, hello.device_nonce, nh)
        ex = Exchange(pkt, hello.device_nonce, nh, up, down, now,
                      sp.encode_packet(KEY_EXCHANGE, nh + proof(down, hello.device_nonce, nh)))
        self.pending = self.pending[-(PENDING_MAX - 1):] + [ex]
        return [], [ex.packet]

    def poll(self, now: float | None = None) -> list[bytes]:
        """The REQUEST_HELLOs that keep the handshake going (call it a few times a second)."""
        if not self.sealed:
            return []
        now = self.clock() if now is None else now
        self.pending = [e for e in self.pending if now - e.started < PENDING_TTL_S]
        if not self.pending and self.session is not None and not self.rekey_wanted:
            self.retry_at = None
            return []
        if self.retry_at is None:
            self.retry_at = now
        if now < self.retry_at:
            return []
        self.retry_at = now + (RETRY_S if self.pending or self.session is not None else IDLE_S)
        self.retries += 1
        return [sp.request_hello()]

    def command(self, ptype: int, payload: bytes = b"") -> bytes | None:
        """A host command as bytes for the link: sealed on a keyed link (None until there
        is a session: a command sent in the clear would be refused by the device; None too
        at the counter limit, where a new session must come first)."""
        if not self.sealed or ptype == sp.REQUEST_HELLO:
            return sp.encode_packet(ptype, payload)
        if self.session is None:
            return None
        if self.tx_counter >= REKEY_AT:
            self.rekey_wanted = True        # poll() asks for a new HELLO, hence new keys
        if self.tx_counter >= TX_LIMIT:
            return None
        out = sp.encode_packet(SEALED_DOWN, seal(self.session.down_key, SEALED_DOWN, self.tx_counter, ptype, payload))
        self.tx_counter += 1
        return out


@dataclass
class DeviceLink:
    """The device's end, in Python: the reference the firmware (core/mcu_link.c) follows,
    and a device for tests over ptys.  `nonce_source()` gives each HELLO its nonce (None:
    the device cannot draw one); a nonce is offered until an exchange for it is accepted,
    and accepted once."""
    key: bytes | None
    nonce_source: object = field(default=lambda: os.urandom(NONCE_BYTES))
    device_id: bytes = bytes(DEVICE_ID_BYTES)
    up_key: bytes | None = None
    down_key: bytes | None = None
    device_nonce: bytes = b""
    nonce_live: bool = False
    tx_counter: int = 0
    rx_highest: int = 0
    rejected: dict = field(default_factory=lambda: {"bad_tag": 0, "replay": 0, "unsealed": 0, "malformed": 0})

    def hello_payload(self, hello: sp.Hello) -> bytes:
        if self.key is None:
            return hello.pack()
        if not self.nonce_live:
            n = self.nonce_source()
            self.device_nonce, self.nonce_live = (n, True) if n is not None else (NO_NONCE, False)
        return dataclasses.replace(hello, protocol=2, device_nonce=self.device_nonce).pack()

    def packet(self, ptype: int, payload: bytes) -> bytes:
        if self.key is None or ptype == sp.HELLO:
            return sp.encode_packet(ptype, payload)
        if self.up_key is None or self.tx_counter >= TX_LIMIT:
            self.up_key = None              # nothing in the clear; nothing past the limit
            return b""
        out = sp.encode_packet(SEALED_UP, seal(self.up_key, SEALED_UP, self.tx_counter, ptype, payload))
        self.tx_counter += 1
        return out

    def rekey_due(self) -> bool:
        return self.up_key is not None and self.tx_counter >= REKEY_AT

    def on_command(self, pkt: sp.Packet) -> tuple[sp.Packet | None, bytes]:
        """(command to obey or None, bytes to send back)."""
        if self.key is None or pkt.type == sp.REQUEST_HELLO:
            return pkt, b""
        if pkt.type == KEY_EXCHANGE:
            if len(pkt.payload) != 2 * NONCE_BYTES or not self.nonce_live:
                self.rejected["malformed"] += 1     # no nonce offered, or it was used already
                return None, b""
            nh, tag = pkt.payload[:NONCE_BYTES], pkt.payload[NONCE_BYTES:]
            up, down = session_keys(self.key, self.device_nonce, nh)
            if proof(down, self.device_nonce, nh) != tag:
                self.rejected["bad_tag"] += 1
                return None, b""
            self.up_key, self.down_key, self.tx_counter, self.rx_highest = up, down, 0, 0
            self.nonce_live = False                 # one session per HELLO
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


def provision_packet(device_id: bytes, key: bytes) -> bytes:
    """PROVISION_KEY for the device with this identity (it refuses one for another)."""
    if len(device_id) != DEVICE_ID_BYTES or len(key) != KEY_BYTES:
        raise ValueError("a device id is 16 bytes and a key 32")
    return sp.encode_packet(PROVISION_KEY, device_id + key)
