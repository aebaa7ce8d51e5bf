"""mcu_bridge_node against garbage, corruption and a vanishing port (real pty and socket)."""
import os
import random
import socket
import time

from mcucoder_ros.link import serial_protocol as sp
from mcucoder_ros.link.vectors import DEVICE_FIELDS


def frame_packets(encoder, photo, seq, k=12):
    f = encoder.encode(photo, k, seq)
    out = sp.encode_packet(sp.FRAME_HEADER, sp.FRAME_HEADER_FMT.pack(seq, 1000 * seq, 12, 28, 28, k, 1))
    for c, ch in zip(f.channel_indices, f.chunks):
        out += sp.encode_packet(sp.CHUNK, sp.CHUNK_HEAD_FMT.pack(seq, c) + ch)
    return out + sp.encode_packet(sp.FRAME_END, sp.FRAME_END_FMT.pack(seq, 1))


HELLO = sp.encode_packet(sp.HELLO, sp.Hello(**DEVICE_FIELDS["hello"]).pack())


def write_all(fd, data):
    while data:
        data = data[os.write(fd, data):]


def make_bridge(ros, port, wait_for_subscriber=True):
    from rclpy.parameter import Parameter

    from mcucoder_ros.nodes.mcu_bridge_node import McuBridgeNode
    node = McuBridgeNode(context=ros.context, namespace="/bridge_test",
                         parameter_overrides=[Parameter("port", value=port),
                                              Parameter("wait_for_subscriber", value=wait_for_subscriber)])
    ros.executor.add_node(node)
    if wait_for_subscriber:       # the bridge opens the port once the probe's subscription has matched
        assert ros.spin_until(lambda: node.thread.is_alive(), 10)
    return node


def test_bridge_survives_garbage_on_a_pty(ros, encoder, photo):
    from rclpy.qos import qos_profile_sensor_data

    from mcucoder_ros.msg import LatentChannels
    master, slave = os.openpty()
    got = []
    ros.node.create_subscription(LatentChannels, "/bridge_test/latent", got.append, qos_profile_sensor_data)
    bridge = make_bridge(ros, os.ttyname(slave))
    try:
        assert ros.spin_until(lambda: bridge.ser is not None, 10)   # pyserial has set the tty raw
        rng = random.Random(1)
        write_all(master, HELLO)
        good = [frame_packets(encoder, photo, s, k=3) for s in range(6)]
        write_all(master, bytes(rng.randrange(256) for _ in range(3000)))          # random bytes
        write_all(master, b"\x00" + good[0])                                         # clean frame
        flipped = bytearray(good[1])
        for _ in range(5):
            flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
        write_all(master, bytes(flipped))                                             # bit flips
        write_all(master, good[2][: len(good[2]) // 2])                               # truncated
        write_all(master, b"\x00" + good[3] + good[3])                                # duplicated
        write_all(master, good[4] + good[5])
        ok = ros.spin_until(lambda: len({m.sequence for m in got} & {0, 3, 4, 5}) == 4, 20)
        ros.spin_for(0.3)
        assert ok, (sorted(m.sequence for m in got), bridge.frames_published, bridge.assembler.errors,
                    bridge.parser.packets, bridge.bytes_in)
        assert sorted(m.sequence for m in got).count(3) == 1 and bridge.assembler.errors["duplicates"] >= 1
        assert bridge.parser.crc_errors + bridge.parser.framing_errors >= 2
        for m in got:
            assert list(m.channel_indices) == [0, 1, 2] or m.sequence in (1, 2)
        assert bridge.thread.is_alive()
    finally:
        ros.executor.remove_node(bridge)
        bridge.destroy_node()
        os.close(master)
        os.close(slave)


def test_bridge_reconnects_when_the_port_comes_back(ros, encoder, photo):
    from rclpy.qos import qos_profile_sensor_data

    from mcucoder_ros.msg import LatentChannels
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    port = srv.getsockname()[1]
    srv.listen(1)
    got = []
    ros.node.create_subscription(LatentChannels, "/bridge_test/latent", lambda m: got.append((time.monotonic(), m)),
                                 qos_profile_sensor_data)
    bridge = make_bridge(ros, f"socket://127.0.0.1:{port}")
    try:
        conn, _ = srv.accept()
        conn.sendall(HELLO + frame_packets(encoder, photo, 0, 2))
        assert ros.spin_until(lambda: got, 10)
        conn.close()                       # the device vanishes...
        srv.close()
        ros.spin_for(1.5)
        assert bridge.counters.get("port_lost", 0) >= 1 and bridge.thread.is_alive()
        srv = socket.socket()              # ...and comes back on the same port
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1", port))
        srv.listen(1)
        srv.settimeout(10)
        conn, _ = srv.accept()
        t_clean = time.monotonic()
        conn.sendall(HELLO + frame_packets(encoder, photo, 1, 2))
        assert ros.spin_until(lambda: any(m.sequence == 1 for _, m in got), 10)
        t_pub = next(t for t, m in got if m.sequence == 1)
        assert t_pub - t_clean < 1.0, f"resumed {t_pub - t_clean:.2f} s after clean data returned"
        conn.close()
    finally:
        srv.close()
        ros.executor.remove_node(bridge)
        bridge.destroy_node()


def test_unknown_protocol_version_is_reported_clearly(ros):
    master, slave = os.openpty()
    bridge = make_bridge(ros, os.ttyname(slave), wait_for_subscriber=False)
    try:
        assert ros.spin_until(lambda: bridge.ser is not None, 10)
        bad = bytearray(sp.Hello(**DEVICE_FIELDS["hello"]).pack())
        bad[0] = 9
        write_all(master, sp.encode_packet(sp.HELLO, bytes(bad)))
        assert ros.spin_until(lambda: bridge.assembler.hello_error is not None, 10)
        err = bridge.assembler.hello_error
        assert "version 9" in err and "understands versions (1, 2)" in err
    finally:
        ros.executor.remove_node(bridge)
        bridge.destroy_node()
        os.close(master)
        os.close(slave)


def test_bridge_publishes_the_pictures_size_and_reports_a_device_error(ros, encoder):
    """A device at a camera size other than 224x224 (FRAME_HEADER with the size, bitstream
    v3) over a real pty: the latent carries width and height and decodes as the host's
    frame; a DEVICE_ERROR (a camera above the firmware's maximum) is logged and turns the
    bridge's diagnostics to ERROR with the device's text."""
    import numpy as np
    from rclpy.qos import qos_profile_sensor_data

    from mcucoder_ros.msg import LatentChannels
    from mcucoder_ros.nodes.common import msg_to_frame
    rgb = np.random.default_rng(5).integers(0, 256, (172, 228, 3), dtype=np.uint8)
    ref = encoder.encode(rgb, 3, 4)
    master, slave = os.openpty()
    got = []
    ros.node.create_subscription(LatentChannels, "/bridge_test/latent", got.append, qos_profile_sensor_data)
    bridge = make_bridge(ros, os.ttyname(slave))
    try:
        assert ros.spin_until(lambda: bridge.ser is not None, 10)
        write_all(master, HELLO)
        out = sp.encode_packet(sp.FRAME_HEADER, sp.FrameHeader(4, 4000, 12, ref.latent_height, ref.latent_width, 3, 3,
                                                                228, 172).pack())
        for c, ch in zip(ref.channel_indices, ref.chunks):
            out += sp.encode_packet(sp.CHUNK, sp.CHUNK_HEAD_FMT.pack(4, c) + ch)
        write_all(master, out + sp.encode_packet(sp.FRAME_END, sp.FRAME_END_FMT.pack(4, 1)))
        assert ros.spin_until(lambda: got, 10)
        m = got[0]
        assert (m.width, m.height, m.bitstream_version) == (228, 172, 3)
        assert msg_to_frame(m).chunks == ref.chunks
        write_all(master, sp.encode_packet(sp.DEVICE_ERROR, b"\x01camera picture 800x600 is outside what this "
                                                            b"firmware codes: at most 640x480"))
        assert ros.spin_until(lambda: bridge.assembler.device_error is not None, 10)
        level, msg, vals = bridge.diagnostics()
        assert level == 2 and "800x600" in msg and "at most 640x480" in msg and vals["device_errors"] == 1
    finally:
        bridge.destroy_node()
        os.close(master)
        os.close(slave)


def _budget_sent_to(ros, firmware_version, budget_pub, scale_pub):
    """A device of this firmware version on a pty; picture_scale 2, then channel_budget 7:
    the payload of the last SET_BUDGET the bridge wrote to it."""
    from std_msgs.msg import UInt8

    from mcucoder_ros.link.vectors import DEVICE_FIELDS as F
    master, slave = os.openpty()
    bridge = make_bridge(ros, os.ttyname(slave), wait_for_subscriber=False)
    parser, got = sp.StreamParser(), []

    def read():
        try:
            got.extend(p for p in parser.feed(os.read(master, 4096)) if p.type == sp.SET_BUDGET)
        except BlockingIOError:
            pass
        return got
    try:
        assert ros.spin_until(lambda: bridge.ser is not None, 10)
        hello = sp.Hello(**dict(F["hello"], firmware_version=firmware_version)).pack()
        write_all(master, sp.encode_packet(sp.HELLO, hello))
        assert ros.spin_until(lambda: bridge.assembler.hello is not None, 10)
        ros.spin_until(lambda: budget_pub.get_subscription_count() and scale_pub.get_subscription_count(), 5)
        scale_pub.publish(UInt8(data=2))
        ros.spin_for(0.3)
        budget_pub.publish(UInt8(data=7))
        os.set_blocking(master, False)
        assert ros.spin_until(read, 10)
        ros.spin_for(0.3)
        read()
        return got[-1].payload
    finally:
        bridge.destroy_node()
        os.close(master)
        os.close(slave)


def test_bridge_sends_the_picture_scale_only_to_a_device_that_codes_scales(ros):
    """picture_scale (the denominator) goes out as SET_BUDGET's second byte to a device of
    firmware 1.2 or later; a device of before gets the 1-byte SET_BUDGET (scale 1) only."""
    from std_msgs.msg import UInt8
    budget_pub = ros.node.create_publisher(UInt8, "/bridge_test/channel_budget", 10)
    scale_pub = ros.node.create_publisher(UInt8, "/bridge_test/picture_scale", 10)
    assert _budget_sent_to(ros, 0x0102, budget_pub, scale_pub) == b"\x07\x01"
    assert _budget_sent_to(ros, 0x0100, budget_pub, scale_pub) == b"\x07"
