"""Serial protocol 2, the sealed link (issue 20): the firmware's ChaCha20-Poly1305 against
RFC 8439's vectors and `cryptography`; key files; the handshake, forgery and replay
rules on both ends; the bridge over a real pty; the real firmware under QEMU."""
import os
import random
import select
import shutil
import subprocess
import time

import pytest
import serial
from conftest import ROOT
from hypothesis import given, settings
from hypothesis import strategies as st
from test_firmware_qemu import connect
from test_mcu_bridge import write_all

from mcucoder_ros.link import sealed
from mcucoder_ros.link import serial_protocol as sp
from mcucoder_ros.link.frames import FrameAssembler
from mcucoder_ros.link.vectors import DEVICE_FIELDS

HAVE_CC = shutil.which("cc") or shutil.which("gcc")
HAVE_QEMU = shutil.which("qemu-system-arm") and shutil.which("arm-none-eabi-gcc")
CLIP = ROOT / "data" / "clips" / "traffic.mp4"


# --- the firmware's AEAD (core/mcu_aead.c, built for this machine) -----------------------
@pytest.fixture(scope="module")
def aead(tmp_path_factory):
    if not HAVE_CC:
        pytest.skip("needs a C compiler")
    build = tmp_path_factory.mktemp("fw")
    subprocess.run(["make", "-s", "-C", str(ROOT / "firmware"), f"BUILD={build}", f"{build}/host/test_aead"],
                   check=True)
    proc = subprocess.Popen([str(build / "host" / "test_aead")], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)

    def ask(*fields):
        proc.stdin.write(" ".join(f.hex() if isinstance(f, bytes) and f else "-" if isinstance(f, bytes) else str(f)
                                  for f in fields) + "\n")
        proc.stdin.flush()
        return proc.stdout.readline().split()
    yield ask
    proc.stdin.close()
    proc.wait(5)


RFC_AEAD = [  # RFC 8439 2.8.2 and A.5
    ("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f", "070000004041424344454647",
     "50515253c0c1c2c3c4c5c6c7",
     b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, "
     b"sunscreen would be it.".hex(),
     "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d63dbea45e8ca9671282fafb69da92728b1a71de0a9e"
     "060b2905d6a5b67ecd3b3692ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc3ff4def08e4b7a9de576"
     "d26586cec64b6116", "1ae10b594f09e26a7e902ecbd0600691"),
]


def test_aead_matches_rfc8439_vectors(aead):
    for key, nonce, aad, msg, ct, tag in RFC_AEAD:
        k, n, a, m = map(bytes.fromhex, (key, nonce, aad, msg))
        assert aead("seal", k, n, a, m) == [ct, tag]
        assert aead("sealchunks", k, n, a, m) == [ct, tag]
        assert aead("open", k, n, a, bytes.fromhex(ct), bytes.fromhex(tag)) == [msg]
    # Poly1305, RFC 8439 2.5.2
    assert aead("poly", bytes.fromhex("85d6be7857556d337f4452fe42d506a80103808afb0db2fd4abff6af4149f51b"),
                b"Cryptographic Forum Research Group") == ["a8061dc1305136c6c22b8baf0c0127a9"]


def test_aead_agrees_with_cryptography_on_10000_random_messages(aead):
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
    rng = random.Random(20)
    for i in range(10_000):
        key, nonce = rng.randbytes(32), rng.randbytes(12)
        aad = rng.randbytes(rng.choice([0, 1, 13, 16, 40]))
        msg = rng.randbytes(rng.choice([0, 1, 15, 16, 17, 63, 64, 65, rng.randrange(1300)]))
        want = ChaCha20Poly1305(key).encrypt(nonce, msg, aad)
        op = "sealchunks" if i % 2 else "seal"
        ct, tag = aead(op, key, nonce, aad, msg)
        assert bytes.fromhex(ct if ct != "-" else "") + bytes.fromhex(tag) == want, i
        if i % 10 == 0:              # any single changed bit is rejected; the right tag opens
            bad = bytearray(want)
            bad[rng.randrange(len(bad))] ^= 1 << rng.randrange(8)
            assert aead("open", key, nonce, aad, bytes(bad[:-16]), bytes(bad[-16:])) == ["reject"]
            assert aead("open", key, nonce, aad, want[:-16], want[-16:]) == [msg.hex() if msg else "-"]
    # the key stream itself (the PRF of the handshake)
    for _ in range(50):
        key, inp = rng.randbytes(32), rng.randbytes(16)
        counter = int.from_bytes(inp[:4], "little")
        assert aead("block", key, counter, inp[4:]) == [sealed.prf_block(key, inp).hex()]


# --- key files -----------------------------------------------------------------------------
def test_key_files_are_owner_only_and_never_overwritten(tmp_path):
    p = tmp_path / "cam.key"
    key = sealed.write_key_file(p)
    assert (p.stat().st_mode & 0o777) == 0o600 and sealed.read_key_file(p) == key
    with pytest.raises(sealed.KeyFileError, match="exists"):
        sealed.write_key_file(p)
    p.chmod(0o644)
    with pytest.raises(sealed.KeyFileError, match="open to other users.*chmod 600"):
        sealed.read_key_file(p)
    q = tmp_path / "short.key"
    q.write_text("abcd\n")
    q.chmod(0o600)
    with pytest.raises(sealed.KeyFileError, match="64 hex digits"):
        sealed.read_key_file(q)
    with pytest.raises(sealed.KeyFileError, match="cannot read"):
        sealed.read_key_file(tmp_path / "missing.key")
    r = subprocess.run([str(ROOT / ".venv" / "bin" / "mcucoder-ros"), "keygen", str(tmp_path / "new.key")],
                       capture_output=True, text=True)
    assert r.returncode == 0 and len(sealed.read_key_file(tmp_path / "new.key")) == 32, r.stderr


# --- the protocol, both ends in Python ------------------------------------------------------
def hello(version=1):
    return sp.Hello(**DEVICE_FIELDS["hello"])


def connect_pair(key, host_key=None):
    """A device and a host link through the handshake; returns (device, host, packets)."""
    dev, host = sealed.DeviceLink(key), sealed.HostLink(host_key if host_key is not None else key)
    parser = sp.StreamParser()
    hello_pkt = parser.feed(sp.encode_packet(sp.HELLO, dev.hello_payload(hello())))[0]
    passed, replies = host.on_packet(hello_pkt)
    assert passed == [] and len(replies) == 1        # a HELLO passes only once its session is proven
    cmd, answer = dev.on_command(parser.feed(replies[0])[0])
    assert cmd is None
    passed = [q for p in parser.feed(answer) for q in host.on_packet(p)[0]]
    assert passed == [hello_pkt]
    return dev, host, parser


def test_handshake_then_only_authentic_fresh_packets_pass():
    key = os.urandom(32)
    dev, host, parser = connect_pair(key)
    assert host.confirmed and dev.up_key == host.up_key and dev.down_key == host.down_key
    pkts = [dev.packet(sp.FRAME_END, sp.FRAME_END_FMT.pack(s, 7)) for s in range(5)]
    got = [host.on_packet(p)[0] for p in parser.feed(b"".join(pkts))]
    assert [sp.FRAME_END_FMT.unpack(g[0].payload)[0] for g in got] == [0, 1, 2, 3, 4]
    # every single-bit change anywhere in a sealed payload is rejected
    raw = parser.feed(pkts[0])[0]
    for bit in range(0, 8 * len(raw.payload), 3):
        bad = bytearray(raw.payload)
        bad[bit // 8] ^= 1 << bit % 8
        assert host.on_packet(sp.Packet(raw.type, bytes(bad))) == ([], [])
    assert host.rejected["bad_tag"] + host.rejected["replay"] == len(range(0, 8 * len(raw.payload), 3))
    # a replay of a packet of this session
    before = dict(host.rejected)
    assert host.on_packet(parser.feed(pkts[2])[0]) == ([], [])
    assert host.rejected["replay"] == before["replay"] + 1
    # a packet made without the key; a plain packet on the keyed link
    stranger = sealed.seal(os.urandom(32), sealed.SEALED_UP, 99, sp.FRAME_END, sp.FRAME_END_FMT.pack(9, 9))
    assert host.on_packet(sp.Packet(sealed.SEALED_UP, stranger)) == ([], [])
    assert host.on_packet(sp.Packet(sp.FRAME_END, sp.FRAME_END_FMT.pack(9, 9))) == ([], [])
    assert host.rejected["bad_tag"] == before["bad_tag"] + 1 and host.rejected["unsealed"] == 1
    # a packet of an earlier session, replayed into a new one
    dev2, host2, _ = connect_pair(key)
    assert host2.on_packet(parser.feed(pkts[4])[0]) == ([], []) and host2.rejected["bad_tag"] == 1
    # commands: sealed ones obeyed once, in order; forged, replayed and plain ones refused
    c1, c2 = host.command(sp.SET_BUDGET, b"\x05"), host.command(sp.SET_FPS, sp.fps_payload(7.5))
    assert dev.on_command(parser.feed(c1)[0])[0] == sp.Packet(sp.SET_BUDGET, b"\x05")
    assert dev.on_command(parser.feed(c2)[0])[0].type == sp.SET_FPS
    assert dev.on_command(parser.feed(c1)[0])[0] is None and dev.rejected["replay"] == 1
    assert dev.on_command(parser.feed(sp.set_budget(1))[0])[0] is None and dev.rejected["unsealed"] == 1
    forged = sealed.seal(os.urandom(32), sealed.SEALED_DOWN, 50, sp.SET_BUDGET, b"\x01")
    assert dev.on_command(sp.Packet(sealed.SEALED_DOWN, forged))[0] is None and dev.rejected["bad_tag"] == 1


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([sp.HELLO, sealed.SEALED_UP, sp.FRAME_HEADER, sp.CHUNK, sealed.SESSION_OK,
                                           sp.STATUS, 0x99]), st.binary(max_size=120)), max_size=12))
def test_fuzzed_packets_never_pass_a_sealed_link(pkts):
    """Protocol 2's fuzz test: whatever arrives (any type, any bytes, fake HELLOs too),
    the host link never raises, and nothing passes but HELLOs until the key's packets do."""
    dev, host, parser = connect_pair(KEY)
    for ptype, payload in pkts:
        passed, _ = host.on_packet(sp.Packet(ptype, payload))
        assert all(p.type == sp.HELLO for p in passed)
    # the device's real packets still pass unless a fuzzed HELLO started a new handshake
    fresh = host.device_nonce == dev.device_nonce or host.up_key == dev.up_key
    passed, _ = host.on_packet(parser.feed(dev.packet(sp.FRAME_END, sp.FRAME_END_FMT.pack(5, 5)))[0])
    assert (passed == [sp.Packet(sp.FRAME_END, sp.FRAME_END_FMT.pack(5, 5))]) == (host.up_key == dev.up_key), fresh


KEY = bytes(range(32))


def test_no_downgrade_and_clear_errors_for_a_missing_key():
    keyed = sealed.HostLink(os.urandom(32))
    plain_hello = sp.Packet(sp.HELLO, hello().pack())
    keyed.on_packet(plain_hello)
    assert "unsealed serial protocol 1" in keyed.error
    assert keyed.on_packet(sp.Packet(sp.FRAME_END, sp.FRAME_END_FMT.pack(1, 1))) == ([], [])
    unkeyed = sealed.HostLink(None)
    dev = sealed.DeviceLink(os.urandom(32))
    unkeyed.on_packet(sp.Packet(sp.HELLO, dev.hello_payload(hello())))
    assert "seals its link" in unkeyed.error and "link_key_file" in unkeyed.error
    # a host with the wrong key: the device refuses its exchange, nothing is agreed
    dev, host = sealed.DeviceLink(os.urandom(32)), sealed.HostLink(os.urandom(32))
    _, replies = host.on_packet(sp.Packet(sp.HELLO, dev.hello_payload(hello())))
    assert dev.on_command(sp.StreamParser().feed(replies[0])[0]) == (None, b"") and dev.rejected["bad_tag"] == 1


# --- mcu_bridge_node over a real pty, the device end in Python ---------------------------------
def test_bridge_publishes_only_authentic_frames_on_a_pty(ros, encoder, photo, tmp_path):
    from rclpy.parameter import Parameter
    from rclpy.qos import qos_profile_sensor_data

    from mcucoder_ros.msg import LatentChannels
    from mcucoder_ros.nodes.mcu_bridge_node import McuBridgeNode
    key_file = tmp_path / "cam.key"
    key = sealed.write_key_file(key_file)
    key_file.chmod(0o640)
    with pytest.raises(sealed.KeyFileError, match="open to other users"):
        McuBridgeNode(context=ros.context, namespace="/sealed_test", parameter_overrides=[
            Parameter("port", value="/dev/null"), Parameter("link_key_file", value=str(key_file))])
    key_file.chmod(0o600)
    master, slave = os.openpty()
    got = []
    ros.node.create_subscription(LatentChannels, "/sealed_test/latent", got.append, qos_profile_sensor_data)
    bridge = McuBridgeNode(context=ros.context, namespace="/sealed_test", parameter_overrides=[
        Parameter("port", value=os.ttyname(slave)), Parameter("link_key_file", value=str(key_file))])
    ros.executor.add_node(bridge)
    dev, parser = sealed.DeviceLink(key), sp.StreamParser()

    def from_bridge():
        out = []
        ros.spin_for(0.2)
        try:
            while True:

                if not select.select([master], [], [], 0.05)[0]:
                    return out
                out += parser.feed(os.read(master, 4096))
        except OSError:
            return out
    try:
        assert ros.spin_until(lambda: bridge.ser is not None, 10)
        write_all(master, sp.encode_packet(sp.HELLO, dev.hello_payload(hello())))
        cmds = []
        assert ros.spin_until(lambda: cmds.extend(from_bridge()) or any(c.type == sealed.KEY_EXCHANGE for c in cmds),
                              10)
        _, answer = dev.on_command(next(c for c in cmds if c.type == sealed.KEY_EXCHANGE))
        write_all(master, answer)
        assert ros.spin_until(lambda: bridge.link.confirmed, 10)

        def frame(seq):
            f = encoder.encode(photo, 3, seq)
            out = dev.packet(sp.FRAME_HEADER, sp.FRAME_HEADER_FMT.pack(seq, 1000 * seq, 12, 28, 28, 3, 1))
            for c, ch in zip(f.channel_indices, f.chunks):
                out += dev.packet(sp.CHUNK, sp.CHUNK_HEAD_FMT.pack(seq, c) + ch)
            return out + dev.packet(sp.FRAME_END, sp.FRAME_END_FMT.pack(seq, 1))
        f0, f1 = frame(0), frame(1)
        write_all(master, f0)
        forged_plain = sp.encode_packet(sp.FRAME_HEADER, sp.FRAME_HEADER_FMT.pack(7, 7, 12, 28, 28, 3, 1))
        stranger = sealed.DeviceLink(os.urandom(32))
        stranger.up_key = os.urandom(32)
        write_all(master, forged_plain + stranger.packet(sp.FRAME_HEADER, sp.FRAME_HEADER_FMT.pack(8, 8, 12, 28,
                                                                                                   28, 3, 1)))
        write_all(master, f0)                                   # replayed
        flipped = bytearray(sp.StreamParser().feed(f1)[1].payload)
        flipped[10] ^= 4
        write_all(master, sp.encode_packet(sealed.SEALED_UP, bytes(flipped)))     # one bit changed
        write_all(master, f1)
        assert ros.spin_until(lambda: len(got) >= 2, 10)
        ros.spin_for(0.5)
        assert [m.sequence for m in got] == [0, 1]
        r = bridge.link.rejected
        assert r["unsealed"] == 1 and r["replay"] == 5 and r["bad_tag"] == 2, r
        level, _, vals = bridge.diagnostics()
        assert vals["session"] and vals["rejected_replay"] == 5 and level == 0
        # the budget topic reaches the device sealed, and only the device with the key can read it
        from std_msgs.msg import UInt8
        pub = ros.node.create_publisher(UInt8, "/sealed_test/channel_budget", 10)
        pub.publish(UInt8(data=4))
        cmds = []
        assert ros.spin_until(lambda: cmds.extend(from_bridge()) or cmds, 10)
        assert cmds[0].type == sealed.SEALED_DOWN and dev.on_command(cmds[0])[0] == sp.Packet(sp.SET_BUDGET, b"\x04")
    finally:
        ros.executor.remove_node(bridge)
        bridge.destroy_node()
        os.close(master)
        os.close(slave)


# --- the real firmware under QEMU, every target ------------------------------------------------
needs_qemu = pytest.mark.skipif(not HAVE_QEMU, reason="needs qemu-system-arm and gcc-arm-none-eabi (installed by "
                                ".ci/run)")


class SealedHost:
    """A host end over the emulated UART: HostLink + frame assembly, recording what came."""

    def __init__(self, target, key, n_frames, device_key="same", flash_from=None):
        from mcucoder_ros.qemu import QemuCamera
        self.cam = QemuCamera(target, str(CLIP), max_frames=n_frames,
                              link_key=key if device_key == "same" else device_key)
        if flash_from is not None:          # the same device booting again: its boot counter persists
            shutil.copy(flash_from, os.path.join(self.cam.dir, "boot.count"))
        self.s = connect(self.cam.start())
        self.link, self.parser, self.asm = sealed.HostLink(key), sp.StreamParser(), FrameAssembler()
        self.frames, self.sealed_packets, self.hellos, self.sent = [], [], [], []
        self.s.write(sp.request_hello())

    def pump(self, until, timeout=180):
        t0 = time.monotonic()
        while not until() and time.monotonic() - t0 < timeout:
            try:
                data = self.s.read(4096)
            except serial.SerialException:      # the firmware finished its frames and exited
                break
            for pkt in self.parser.feed(data):
                if pkt.type == sealed.SEALED_UP:
                    self.sealed_packets.append(pkt)
                if pkt.type == sp.HELLO:
                    self.hellos.append(pkt)
                passed, replies = self.link.on_packet(pkt)
                for r in replies:
                    self.s.write(r)
                    self.sent.append(r)
                for p in passed:
                    self.frames += self.asm.on_packet(p)
            for r in getattr(self.link, "poll", lambda: [])():     # (absent before issue 29)
                self.s.write(r)
        return until()

    def write(self, data: bytes):
        self.s.write(data)
        self.sent.append(data)

    def close(self):
        self.s.close()
        self.cam.stop()


def tampered(key, ptype, payload, counter):
    """A sealed command with one bit flipped in its ciphertext (CRC recomputed, so only the
    AEAD can catch it)."""
    body = bytearray(sealed.seal(key, sealed.SEALED_DOWN, counter, ptype, payload))
    body[6] ^= 0x10
    return sp.encode_packet(sealed.SEALED_DOWN, bytes(body))


@needs_qemu
@pytest.mark.parametrize("target", ["m7", "m33", "stm32f405", "m3", "m55"])
def test_firmware_seals_its_link_and_refuses_forged_and_replayed_packets(target, encoder, tmp_path):
    from mcucoder_ros.evaluation import collect_frames
    key, n = os.urandom(32), 3
    h = SealedHost(target, key, n)
    try:
        assert h.pump(lambda: h.link.confirmed), "no sealed session"
        assert h.hellos[0].payload[0] == 2
        good = h.link.command(sp.SET_FPS, sp.fps_payload(0))               # obeyed (as fast as possible)
        h.s.write(good)
        h.s.write(good)                                                     # replayed in the session
        h.s.write(sp.set_budget(1))                                          # in the clear
        h.s.write(sp.encode_packet(sealed.SEALED_DOWN, sealed.seal(os.urandom(32), sealed.SEALED_DOWN, 10**6,
                                                                   sp.SET_BUDGET, b"\x01")))   # without the key
        h.s.write(tampered(h.link.down_key, sp.SET_BUDGET, b"\x01", h.link.tx_counter))      # one bit changed
        h.link.tx_counter += 1
        h.s.write(h.link.command(sp.REQUEST_STATUS))
        assert h.pump(lambda: len(h.frames) >= n and h.asm.last_status is not None), (
            len(h.frames), h.asm.last_status, h.link.rejected, h.asm.errors, h.parser.crc_errors, h.cam.report())
        status = h.asm.last_status
        assert len(status) == 10 and status[3] == 12, status                 # budget untouched
        bad_tag, replay, unsealed, malformed = status[6:]
        assert (bad_tag, replay, unsealed) == (2, 1, 1), status
        # every frame authentic and whole: the host encoder's chunks at k = 12
        video = [f for _, f in collect_frames([str(CLIP)], n, "native")]     # the clip at its own size
        assert [len(df.frame.chunks) for df in h.frames] == [12] * n
        for df, rgb in zip(h.frames, video):
            assert df.frame.chunks == encoder.encode(rgb, 12).chunks
        # the host refuses the device's packets altered, replayed, or made without the key
        rec = h.sealed_packets[3]
        before = dict(h.link.rejected)
        flipped = bytearray(rec.payload)
        flipped[len(flipped) // 2] ^= 0x01
        for bad in (sp.Packet(rec.type, bytes(flipped)), rec,
                    sp.Packet(sealed.SEALED_UP, sealed.seal(os.urandom(32), sealed.SEALED_UP, 10**6, sp.FRAME_END,
                                                            sp.FRAME_END_FMT.pack(1, 1)))):
            assert h.link.on_packet(bad) == ([], [])
        assert h.link.rejected["bad_tag"] == before["bad_tag"] + 2
        assert h.link.rejected["replay"] == before["replay"] + 1
        first = (h.sealed_packets, good)
        shutil.copy(os.path.join(h.cam.dir, "boot.count"), tmp_path / "boot.count")
    finally:
        h.close()
    # the device boots again, a second connection: nothing of the first one is accepted, either way
    h2 = SealedHost(target, key, 1, flash_from=tmp_path / "boot.count")
    try:
        assert h2.pump(lambda: h2.link.confirmed)
        assert h2.hellos[0].payload[20:] != h.hellos[0].payload[20:]      # a fresh device nonce
        old_packets, old_command = first
        for pkt in old_packets[:5]:
            assert h2.link.on_packet(pkt) == ([], [])
        assert h2.link.rejected["bad_tag"] == 5, (h2.link.rejected, len(h2.sealed_packets), len(h2.hellos))
        h2.s.write(old_command)                                             # a command of the first session
        h2.s.write(h2.link.command(sp.REQUEST_STATUS))
        # the device also sends a status of its own when its frame is done, maybe before it
        # read our command (a fast host): wait for one that counts it, or the stream's end
        h2.pump(lambda: h2.asm.last_status is not None and h2.asm.last_status[6] >= 1, timeout=60)
        assert h2.asm.last_status is not None
        assert list(h2.asm.last_status[6:9]) == [1, 0, 0], h2.asm.last_status  # refused: bad tag
    finally:
        h2.close()


@needs_qemu
def test_provisioning_needs_the_operator_to_name_the_device_and_works_once(tmp_path):
    """Issue 29: a key goes to a device only by the operator's command naming its identity,
    and only to that device; never twice."""
    from mcucoder_ros.apps.provision import provision
    from mcucoder_ros.qemu import QemuCamera
    key_file = tmp_path / "cam.key"
    key = sealed.write_key_file(key_file)
    # a device without a key, streaming until stopped (a fixed number of frames could end,
    # and the device with it, before the last step on a fast host)
    cam = QemuCamera("m33", str(CLIP), max_frames=4, stream_frames=100000)
    url = cam.start()
    stored = os.path.join(cam.dir, "link.key")
    try:
        shown = []
        with pytest.raises(RuntimeError, match=f"--device-id {cam.device_id.hex()}"):
            provision(url, key_file, None, log=shown.append)        # shows the identity, sends nothing
        assert cam.device_id.hex() in shown[0]
        with pytest.raises(RuntimeError, match="nothing sent"):
            provision(url, key_file, os.urandom(16).hex())          # another device's identity
        s = connect(url)
        s.write(sealed.provision_packet(os.urandom(16), os.urandom(32)))   # a key addressed to another device
        time.sleep(1.0)
        s.close()
        assert not os.path.exists(stored)
        assert provision(url, key_file, cam.device_id.hex()) == cam.device_id
        assert open(stored, "rb").read() == key
        with pytest.raises(RuntimeError, match="already has a key"):
            provision(url, key_file, cam.device_id.hex())
    finally:
        cam.stop()
    # a host with the wrong key: no session, no frame
    w = SealedHost("m33", os.urandom(32), 2, device_key=key)
    try:
        assert not w.pump(lambda: w.link.confirmed or w.frames, 5)
        assert w.frames == [] and w.link.rejected["bad_tag"] == 0
    finally:
        w.close()
