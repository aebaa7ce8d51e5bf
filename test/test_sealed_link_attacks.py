"""Issue 29: the sealed link attacked by an outsider on the line (read, drop, inject,
replay, change bytes; no key), as an attacker's tests.  Each finding of the issue has a
test here that fails on the code before the fix:
1. keystream reuse after a reset of the device's storage (fresh storage, an old
   KEY_EXCHANGE and command replayed): test_fresh_storage_*, test_twenty_launches_*;
2. one lost KEY_EXCHANGE stopping the link: test_handshake_attacks_recover_*,
   test_host_retries_*;
3. a forged HELLO mid-session stopping it: the same two;
4. a forged protocol-1 HELLO making the bridge send its key: test_handshake_attacks_*,
   test_bridge_never_sends_its_key_*;
5. the send counter's wrap and binary key files: test_counter_limit_*, test_binary_key_file_*.
"""
import os
import random
import shutil
import statistics
import subprocess
import time

import pytest
import serial
from conftest import ROOT
from test_firmware_qemu import connect
from test_sealed_link import CLIP, HAVE_CC, KEY, SealedHost, hello, needs_qemu

from mcucoder_ros.link import sealed
from mcucoder_ros.link import serial_protocol as sp

TARGETS = ["m7", "m33", "stm32f405", "m3", "m55"]


# --- both ends in Python: the rules -----------------------------------------------------------
def handshake(key=KEY):
    """A device and a host through the handshake (what passes on the way is not checked
    here: test_sealed_link.connect_pair does)."""
    dev, host, parser = sealed.DeviceLink(key), sealed.HostLink(key), sp.StreamParser()
    _, replies = host.on_packet(parser.feed(sp.encode_packet(sp.HELLO, dev.hello_payload(hello())))[0])
    for p in parser.feed(dev.on_command(parser.feed(replies[0])[0])[1]):
        host.on_packet(p)
    assert host.confirmed and host.up_key == dev.up_key
    return dev, host, parser


def test_host_retries_until_a_session_and_resends_the_exchange_for_a_repeated_hello():
    """Finding 2: the exchange is lost; the device repeats its HELLO (same nonce, still
    offered), and the host answers it again; and while no session comes, poll() keeps asking."""
    clock = [0.0]
    dev, host = sealed.DeviceLink(KEY), sealed.HostLink(KEY, clock=lambda: clock[0])
    parser = sp.StreamParser()
    hello_bytes = sp.encode_packet(sp.HELLO, dev.hello_payload(hello()))
    _, replies = host.on_packet(parser.feed(hello_bytes)[0])
    assert len(replies) == 1                                    # ... and the proxy drops it
    asks = []
    for step in range(1, 40):                                   # 4 s without an answer: it never gives up
        clock[0] = step * 0.1
        asks += [(clock[0], r) for r in host.poll()]
    assert all(r == sp.request_hello() for _, r in asks)
    gaps = [b - a for (a, _), (b, _) in zip([(0.0, None)] + asks, asks)]
    assert len(asks) >= 6 and max(gaps) <= sealed.RETRY_S + 0.11, gaps
    # the device answers REQUEST_HELLO with the same HELLO (its nonce is still offered)
    assert sp.encode_packet(sp.HELLO, dev.hello_payload(hello())) == hello_bytes
    _, replies = host.on_packet(parser.feed(hello_bytes)[0])
    assert len(replies) == 1
    _, answer = dev.on_command(parser.feed(replies[0])[0])
    assert answer and [q.type for p in parser.feed(answer) for q in host.on_packet(p)[0]] == [sp.HELLO]
    assert host.confirmed and host.up_key == dev.up_key and host.poll(clock[0] + 10) == []
    # a device that cannot draw a nonce (no generator, boot counter not stored) says so
    nn = sealed.HostLink(KEY)
    assert nn.on_packet(sp.Packet(sp.HELLO, sealed.DeviceLink(KEY, nonce_source=lambda: None)
                                  .hello_payload(hello()))) == ([], []) and "fresh nonce" in nn.error


def test_a_hello_mid_session_never_tears_it_down_and_leads_to_new_keys():
    """Findings 3 and 4 on the host link: forged HELLOs of protocol 1 and 2 mid-session;
    the old keys serve until the new session is proven; a forged HELLO cannot displace the
    device's own exchange."""
    dev, host, parser = handshake()
    frame_end = dev.packet(sp.FRAME_END, sp.FRAME_END_FMT.pack(1, 1))
    rng = random.Random(3)
    from mcucoder_ros.apps.soak_link import forged_hello
    passed, replies = host.on_packet(parser.feed(forged_hello(1, rng))[0])
    assert (passed, replies) == ([], []) and host.confirmed and host.error is None
    assert host.rejected["downgrade"] == 1
    passed, replies = host.on_packet(parser.feed(forged_hello(2, rng))[0])
    assert passed == [] and len(replies) == 1 and host.confirmed   # an exchange the device will refuse
    assert dev.on_command(parser.feed(replies[0])[0]) == (None, b"") and dev.rejected["malformed"] == 1
    assert [p.type for p in host.on_packet(parser.feed(frame_end)[0])[0]] == [sp.FRAME_END]   # old keys still work
    # the host asks for the device's own HELLO; more forged ones come after it
    t = time.monotonic()
    assert host.poll(t + sealed.RETRY_S + 0.01) == [sp.request_hello()]
    dev_hello = parser.feed(sp.encode_packet(sp.HELLO, dev.hello_payload(hello())))[0]
    _, replies = host.on_packet(dev_hello)
    for _ in range(2):
        host.on_packet(parser.feed(forged_hello(2, rng))[0])
    _, answer = dev.on_command(parser.feed(replies[0])[0])
    old_up = host.up_key
    passed = [q for p in parser.feed(answer) for q in host.on_packet(p)[0]]
    assert passed == [dev_hello] and host.up_key == dev.up_key != old_up and host.sessions == 2
    assert [p.type for p in host.on_packet(parser.feed(dev.packet(sp.FRAME_END, sp.FRAME_END_FMT.pack(2, 2)))[0])[0]] \
        == [sp.FRAME_END]
    # a SESSION_OK lost: the first sealed packet under the new keys proves the session too
    _, replies = host.on_packet(parser.feed(sp.encode_packet(sp.HELLO, dev.hello_payload(hello())))[0])
    dev.on_command(parser.feed(replies[0])[0])                  # its SESSION_OK is dropped
    got = host.on_packet(parser.feed(dev.packet(sp.FRAME_END, sp.FRAME_END_FMT.pack(3, 3)))[0])[0]
    assert [p.type for p in got] == [sp.HELLO, sp.FRAME_END] and host.sessions == 3


def test_the_device_takes_one_exchange_per_offered_nonce():
    parser = sp.StreamParser()
    dev2 = sealed.DeviceLink(KEY)
    h2 = sealed.HostLink(KEY)
    _, replies = h2.on_packet(parser.feed(sp.encode_packet(sp.HELLO, dev2.hello_payload(hello())))[0])
    exchange = parser.feed(replies[0])[0]
    assert dev2.on_command(exchange)[1]                         # accepted, SESSION_OK
    assert dev2.on_command(exchange) == (None, b"") and dev2.rejected["malformed"] == 1   # not twice
    # a new HELLO offers a new nonce; the old exchange does not fit it
    dev2.hello_payload(hello())
    assert dev2.on_command(exchange) == (None, b"") and dev2.rejected["bad_tag"] == 1


def test_counter_limit_ends_sealing_and_asks_for_new_keys():
    """Finding 5: no counter wraps.  The host stops sealing commands at the limit and asks
    for a HELLO (new keys) from REKEY_AT on; the device (Python reference) too."""
    dev, host, parser = handshake()
    host.tx_counter = 2**32 - 1
    assert host.command(sp.SET_BUDGET, b"\x03") is None                # never a counter past the limit
    host.tx_counter = sealed.REKEY_AT
    assert host.command(sp.SET_BUDGET, b"\x03") is not None
    assert host.poll() == [sp.request_hello()]
    host.tx_counter = sealed.TX_LIMIT
    assert host.command(sp.SET_BUDGET, b"\x03") is None
    dev.tx_counter = sealed.REKEY_AT
    assert dev.rekey_due()
    dev.tx_counter = sealed.TX_LIMIT
    assert dev.packet(sp.FRAME_END, sp.FRAME_END_FMT.pack(1, 1)) == b"" and dev.up_key is None


@pytest.mark.skipif(not HAVE_CC, reason="needs a C compiler")
def test_counter_limit_in_the_firmware(tmp_path):
    """Finding 5 in the C core: at the limit the device seals nothing (the session ends, so
    no AEAD nonce repeats) and from REKEY_AT on it asks for new keys."""
    src = tmp_path / "t.c"
    src.write_text(r'''
#include <stdio.h>
#include <string.h>
#include "mcu_protocol.h"
static size_t out_n;
void mcu_port_putc(uint8_t c) { (void)c; out_n++; }
#ifndef MCU_LINK_TX_LIMIT
#define MCU_LINK_TX_LIMIT 0xFFFFFF00u
#endif
#ifndef MCU_LINK_REKEY_AT
#define MCU_LINK_REKEY_AT 0x80000000u
#define mcu_link_rekey_due(l) (-1)    /* a core without re-keying */
#endif
int main(void) {
    static mcu_link_t l;
    uint8_t hn[16] = {0};
    l.keyed = 1;                      /* a keyed device in a session (as firmware_sealed.elf) */
    l.key[0] = 1;
    mcu_link_session_for_test(&l, hn);
    mcu_protocol_set_link(&l);
    uint8_t p[8] = {0};
    l.tx_counter = MCU_LINK_REKEY_AT - 1;
    int early = mcu_link_rekey_due(&l);
    mcu_send_packet(0x04, p, 8, 0, 0);
    int due = mcu_link_rekey_due(&l), again = mcu_link_rekey_due(&l);
    l.tx_counter = MCU_LINK_TX_LIMIT - 1;
    out_n = 0;
    size_t last = mcu_send_packet(0x04, p, 8, 0, 0);
    size_t past = mcu_send_packet(0x04, p, 8, 0, 0);
    size_t hello = mcu_send_packet(0x01, p, 8, 0, 0);
    printf("%d %d %d %zu %zu %d %zu %u\n", early, due, again, last, past, l.session, hello, (unsigned)l.tx_counter);
    return 0;
}
''')
    exe = tmp_path / "t"
    fw = ROOT / "firmware"
    subprocess.run(["cc", "-std=c99", "-O1", "-Wall", "-DMCU_SELF_SESSION", f"-I{fw / 'core'}", "-o", str(exe),
                    str(src), str(fw / "core/mcu_protocol.c"), str(fw / "core/mcu_link.c"),
                    str(fw / "core/mcu_aead.c")], check=True)
    early, due, again, last, past, session, hello_n, counter = subprocess.run(
        [str(exe)], capture_output=True, text=True, check=True).stdout.split()
    assert int(last) > 0 and past == "0" and session == "0"   # the last counter sealed, none past it
    assert (early, due, again) == ("0", "1", "0")            # once at REKEY_AT, then every 64 packets
    assert int(hello_n) > 0 and int(counter) == 0xFFFFFF00     # HELLO still goes out (for new keys)


def test_binary_key_file_gets_an_error_naming_it(tmp_path):
    p = tmp_path / "raw.key"
    p.write_bytes(bytes(range(200, 232)))
    p.chmod(0o600)
    with pytest.raises(sealed.KeyFileError, match=f"{p}.*not text"):
        sealed.read_key_file(p)


# --- the bridge over a pty: it never sends its key ---------------------------------------------
def test_bridge_never_sends_its_key_whatever_the_line_says(ros, tmp_path):
    """Finding 4: with provision_key:=true, a forged protocol-1 HELLO (before and during a
    session) never makes the bridge write PROVISION_KEY or the key's bytes."""
    import select

    from rclpy.parameter import Parameter

    from mcucoder_ros.nodes.mcu_bridge_node import McuBridgeNode
    key_file = tmp_path / "cam.key"
    key = sealed.write_key_file(key_file)
    master, slave = os.openpty()
    bridge = McuBridgeNode(context=ros.context, namespace="/prov_test", parameter_overrides=[
        Parameter("port", value=os.ttyname(slave)), Parameter("link_key_file", value=str(key_file)),
        Parameter("provision_key", value=True), Parameter("wait_for_subscriber", value=False)])
    ros.executor.add_node(bridge)
    written = b""

    def drain(seconds):
        nonlocal written
        t0 = time.monotonic()
        while time.monotonic() - t0 < seconds:
            ros.spin_for(0.05)
            while select.select([master], [], [], 0)[0]:
                written += os.read(master, 4096)
    try:
        assert ros.spin_until(lambda: bridge.ser is not None, 10)
        from mcucoder_ros.apps.soak_link import forged_hello
        os.write(master, forged_hello(1, random.Random(1)))
        drain(1.5)
        dev = sealed.DeviceLink(key)
        os.write(master, sp.encode_packet(sp.HELLO, dev.hello_payload(hello())))
        drain(1.0)
        ex = [p for p in sp.StreamParser().feed(written) if p.type == sealed.KEY_EXCHANGE][-1]
        os.write(master, dev.on_command(ex)[1])
        assert ros.spin_until(lambda: bridge.link.confirmed, 5)
        os.write(master, forged_hello(1, random.Random(2)))
        drain(1.0)
        types = {p.type for p in sp.StreamParser().feed(written)}
        assert sealed.PROVISION_KEY not in types and key not in written, types
        assert bridge.link.confirmed and bridge.link.rejected["downgrade"] == 2
    finally:
        ros.executor.remove_node(bridge)
        bridge.destroy_node()
        os.close(master)
        os.close(slave)


# --- the real firmware under QEMU, every target ------------------------------------------------
def _first_hello(url, timeout=30):
    s = connect(url)
    parser, t0 = sp.StreamParser(), time.monotonic()
    s.write(sp.request_hello())
    try:
        while time.monotonic() - t0 < timeout:
            for p in parser.feed(s.read(4096)):
                if p.type == sp.HELLO:
                    return s, p, parser
    except serial.SerialException:
        pass
    s.close()
    raise AssertionError("no HELLO")


@needs_qemu
@pytest.mark.parametrize("target", TARGETS)
def test_fresh_storage_gives_fresh_nonces_and_an_old_exchange_is_refused(target):
    """Finding 1: two launches, each with fresh storage (boot counter from the start). The
    attacker recorded the first connection (its KEY_EXCHANGE and a sealed SET_BUDGET(5)) and
    replays it to the second device: no sealed packet comes back, no command is obeyed, and
    the device's STATUS counts the refusals."""
    key = os.urandom(32)
    first = SealedHost(target, key, 50)
    try:
        assert first.pump(lambda: first.link.confirmed, 60), "no session"
        old_nonce = first.link.device_nonce
        old_exchange = b"".join(r for r in first.sent if sp.StreamParser().feed(r)[0].type == sealed.KEY_EXCHANGE)
        old_budget = first.link.command(sp.SET_BUDGET, b"\x05")
        first.write(old_budget)
        first.write(first.link.command(sp.REQUEST_STATUS))
        assert first.pump(lambda: first.asm.last_status is not None and first.asm.last_status[3] == 5, 60)
    finally:
        first.close()
    from mcucoder_ros.qemu import QemuCamera
    cam = QemuCamera(target, str(CLIP), max_frames=50, link_key=key)       # the device again, storage reset
    try:
        s, new_hello, parser = _first_hello(cam.start())
        assert new_hello.payload[20:] != old_nonce, "the device nonce repeats after a reset"
        # the attacker replays the old exchange and command, then watches for 1.5 s
        s.write(old_exchange + old_budget)
        t0, back = time.monotonic(), []
        while time.monotonic() - t0 < 1.5:
            back += parser.feed(s.read(4096))
        assert back and {p.type for p in back} == {sp.HELLO}, [p.type for p in back]   # nothing sealed
        # the real host now: a session of its own; the old command again, inside it
        link = sealed.HostLink(key)
        t0, got_status = time.monotonic(), None
        for p in back[-1:]:
            for r in link.on_packet(p)[1]:
                s.write(r)
        asked = False
        while time.monotonic() - t0 < 60 and got_status is None:
            for r in link.poll():
                s.write(r)
            for p in parser.feed(s.read(4096)):
                passed, replies = link.on_packet(p)
                for r in replies:
                    s.write(r)
                for q in passed:
                    if q.type == sp.STATUS and len(q.payload) == sp.STATUS2_FMT.size:
                        st = sp.STATUS2_FMT.unpack(q.payload)
                        if st[6] >= len(sp.StreamParser().feed(old_exchange)) + 1:
                            got_status = st
            if link.confirmed and not asked:
                s.write(old_budget)
                s.write(link.command(sp.REQUEST_STATUS))
                asked = True
        assert got_status is not None, link.rejected
        assert got_status[3] == 12                                   # budget untouched
        bad_tag, replay, unsealed, malformed = got_status[6:]
        n_old = len(sp.StreamParser().feed(old_exchange))          # the exchanges recorded (repeats of one, or more)
        assert bad_tag == n_old + 1 and unsealed == 1, got_status   # old proofs; old command in the session; before it
        s.close()
    finally:
        cam.stop()


@needs_qemu
def test_twenty_launches_with_fresh_storage_give_twenty_nonces():
    """Acceptance: 20 launches of the same device (key kept), storage reset each time."""
    from mcucoder_ros.qemu import QemuCamera
    key, nonces = os.urandom(32), []
    for _ in range(20):
        cam = QemuCamera("m33", str(CLIP), max_frames=1, link_key=key)
        try:
            s, h, _ = _first_hello(cam.start())
            nonces.append(h.payload[20:])
            s.close()
        finally:
            cam.stop()
    assert len(set(nonces)) == 20 and sealed.NO_NONCE not in nonces


@needs_qemu
def test_without_a_generator_the_boot_counter_must_be_stored_first(tmp_path):
    """A part without a random generator: its nonces rest on the boot counter, committed
    before use; when the counter cannot be stored, no nonce and no session."""
    from mcucoder_ros.qemu import QemuCamera
    key = os.urandom(32)
    storage = tmp_path / "flash"
    storage.mkdir()
    nonces = []
    for _ in range(2):                      # the same storage, kept: a new nonce each boot
        cam = QemuCamera("m33", str(CLIP), max_frames=1, link_key=key, rng=False, storage=str(storage))
        try:
            s, h, _ = _first_hello(cam.start())
            nonces.append(h.payload[20:])
            s.close()
        finally:
            cam.stop()
    assert nonces[0] != nonces[1] and (storage / "boot.count").read_bytes() == (2).to_bytes(4, "little")
    (storage / "boot.count").unlink()
    (storage / "boot.count").mkdir()        # storage that cannot be written
    cam = QemuCamera("m33", str(CLIP), max_frames=1, link_key=key, rng=False, storage=str(storage))
    try:
        url = cam.start()
        s, h, parser = _first_hello(url)
        assert h.payload[20:] == sealed.NO_NONCE
        link = sealed.HostLink(key)
        link.on_packet(h)
        assert "fresh nonce" in link.error
        # a host that answers anyway gets nothing
        nh = os.urandom(16)
        up, down = sealed.session_keys(key, h.payload[20:], nh)
        s.write(sp.encode_packet(sealed.KEY_EXCHANGE, nh + sealed.proof(down, h.payload[20:], nh)))
        t0, back = time.monotonic(), []
        while time.monotonic() - t0 < 1.5:
            back += parser.feed(s.read(4096))
        assert {p.type for p in back} <= {sp.HELLO}
        s.close()
    finally:
        cam.stop()
        shutil.rmtree(storage, ignore_errors=True)


class BridgeRig:
    """The real firmware under QEMU -> an attacker's proxy -> a real mcu_bridge_node (with
    provision_key:=true, which must not matter), recording when frames arrive."""

    def __init__(self, ros, target, tmp_path, drop_first_exchange=False):
        from rclpy.parameter import Parameter
        from rclpy.qos import qos_profile_sensor_data

        from mcucoder_ros.apps.soak_link import FaultProxy
        from mcucoder_ros.msg import LatentChannels
        from mcucoder_ros.nodes.mcu_bridge_node import McuBridgeNode
        from mcucoder_ros.qemu import QemuCamera
        self.ros = ros
        key_file = tmp_path / "cam.key"
        self.key = sealed.write_key_file(key_file)
        self.cam = QemuCamera(target, str(CLIP), max_frames=4, link_key=self.key, stream_frames=100000)
        url = self.cam.start()
        self.proxy = FaultProxy(int(url.rsplit(":", 1)[1]), seed=29)
        if drop_first_exchange:
            self.proxy.drop_down[sealed.KEY_EXCHANGE] = 1
        self.proxy.start()
        self.frames = []
        ns = f"/attack_{target}"
        self.sub = ros.node.create_subscription(LatentChannels, f"{ns}/latent",
                                                lambda m: self.frames.append(time.monotonic()),
                                                qos_profile_sensor_data)
        self.bridge = McuBridgeNode(context=ros.context, namespace=ns, parameter_overrides=[
            Parameter("port", value=f"socket://127.0.0.1:{self.proxy.port}"),
            Parameter("link_key_file", value=str(key_file)), Parameter("provision_key", value=True),
            Parameter("reconnect_max_s", value=0.2), Parameter("wait_for_subscriber", value=False)])
        ros.executor.add_node(self.bridge)

    def frame_after(self, t, timeout):
        return self.ros.spin_until(lambda: any(f > t for f in self.frames), timeout)

    def close(self):
        self.ros.executor.remove_node(self.bridge)
        self.bridge.destroy_node()
        self.ros.node.destroy_subscription(self.sub)
        self.proxy.stop.set()
        self.cam.stop()


@needs_qemu
@pytest.mark.parametrize("target", TARGETS)
def test_handshake_attacks_recover_with_frames_and_never_leak_the_key(target, ros, tmp_path):
    """Findings 2, 3 and 4 against the real firmware and the real bridge: one dropped
    KEY_EXCHANGE, a forged protocol-2 HELLO and a forged protocol-1 HELLO mid-session, a
    replayed KEY_EXCHANGE; after each, frames within 3 s (or three frame periods, where this
    target under QEMU on this host is slower), a new session within a retry and two frame
    periods of a HELLO, and the key never on the wire."""
    from mcucoder_ros.apps.soak_link import forged_hello
    rig = BridgeRig(ros, target, tmp_path, drop_first_exchange=True)
    rng = random.Random(29)
    try:
        assert ros.spin_until(lambda: not rig.proxy.drop_down[sealed.KEY_EXCHANGE], 30), "no exchange to drop"
        t_drop = time.monotonic()
        assert rig.frame_after(t_drop, 3.0), f"no frame within 3 s of a dropped KEY_EXCHANGE ({target})"
        # this target's frame period under QEMU on this host (0.12-0.8 s here, more on a busy
        # machine): the device reads the host between frames, so a handshake waits up to two
        assert ros.spin_until(lambda: len(rig.frames) >= 3, 20)
        period = statistics.median(b - a for a, b in zip(rig.frames, rig.frames[1:]))
        # a forged protocol-2 HELLO mid-session: new keys within one retry and two frames
        # (REQUEST_HELLO, then the exchange, each read between frames), frames go on
        sessions = rig.bridge.link.sessions
        t = time.monotonic()
        rig.proxy.inject_up(forged_hello(2, rng))
        within = sealed.RETRY_S + 2 * period + 1.0
        assert ros.spin_until(lambda: rig.bridge.link.sessions > sessions, within), \
            f"no new session within {within:.1f} s (frame period {period:.2f} s)"
        frame_within = max(3.0, 3 * period)
        assert rig.frame_after(t, frame_within), f"no frame within {frame_within:.1f} s of a forged HELLO"
        # a forged protocol-1 HELLO mid-session: ignored, no teardown, no key
        t = time.monotonic()
        rig.proxy.inject_up(forged_hello(1, rng))
        assert rig.frame_after(t, frame_within), f"no frame within {frame_within:.1f} s of a forged protocol-1 HELLO"
        assert rig.bridge.link.confirmed and rig.bridge.link.error is None
        # an old KEY_EXCHANGE replayed to the device: refused, frames go on
        t = time.monotonic()
        rig.proxy.inject_down(rig.proxy.sent_down(sealed.KEY_EXCHANGE)[0])
        assert rig.frame_after(t, frame_within)
        written = b"".join(raw for _, _, raw in rig.proxy.down_log)
        assert not rig.proxy.sent_down(sealed.PROVISION_KEY) and rig.key not in written
    finally:
        rig.close()
