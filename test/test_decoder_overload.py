"""decoder_node under overload (real rclpy, Fast DDS, decoder_node in its own process):
it decodes the newest frame, drops the stale ones and keeps latency bounded; and an
execution provider this onnxruntime lacks falls back to the CPU with one warning."""
import time

import numpy as np
import pytest
from ros_helpers import start, stop


def _frames(encoder, photos):
    return [encoder.encode(p, 12, i) for i, p in enumerate(photos)]


def _run(ros, ns, frames, offer_hz, seconds, *node_args):
    """Publish frames at offer_hz on <ns>/latent_gated for `seconds`; return
    (images with their receive time, receiver reports, decoder_node output)."""
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import Image

    from mcucoder_ros.msg import LatentChannels, ReceiverReport
    from mcucoder_ros.nodes.common import frame_to_msg

    got, reports = [], []
    clock = ros.node.get_clock()
    ros.node.create_subscription(Image, f"{ns}/image_decoded",
                                 lambda m: got.append((m, clock.now().nanoseconds * 1e-9)),
                                 QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE))
    ros.node.create_subscription(ReceiverReport, f"{ns}/receiver_report", reports.append, 50)
    pub = ros.node.create_publisher(LatentChannels, f"{ns}/latent_gated", qos_profile_sensor_data)
    proc = start("decoder_node", "--ros-args", "-r", f"__ns:={ns}", *node_args)
    try:
        assert ros.spin_until(lambda: pub.get_subscription_count() > 0, 30), stop(proc)
        # warm-up: a frame through, so that model loading is not counted (best effort:
        # repeated until the decoder's reader has matched and one arrives)
        t_warm = time.monotonic()
        while not got:
            assert time.monotonic() - t_warm < 60, stop(proc)
            pub.publish(frame_to_msg(frames[0], clock.now().to_msg(), "cam"))
            ros.spin_until(lambda: got, 1.0)
        ros.spin_for(0.5)
        got.clear(), reports.clear()
        t0, i = time.monotonic(), 0
        while time.monotonic() - t0 < seconds:
            if time.monotonic() - t0 >= i / offer_hz:
                pub.publish(frame_to_msg(frames[i % len(frames)], clock.now().to_msg(), "cam"))
                i += 1
            ros.executor.spin_once(timeout_sec=0.002)
        ros.spin_for(1.0)
    finally:
        out = stop(proc)
    return got, reports, i, out


def test_overload_drops_stale_frames_and_bounds_latency(ros, encoder, photos):
    """Offered several times what it can decode (the FP32 decoder on one thread), the
    node publishes at its own pace; every published frame is at most about two output
    intervals plus one decode time old, and the skipped frames are counted."""
    offer_hz = 60.0
    got, reports, offered, out = _run(ros, "/overload_test", _frames(encoder, photos), offer_hz, 6.0,
                                      "-p", "decoder:=fast", "-p", "threads:=1")
    assert len(got) >= 10, out
    decode_s = np.median([r.decode_ms for r in reports]) / 1000
    out_rate = len(got) / 6.0
    assert offered >= 3 * out_rate, f"not an overload: offered {offered}, decoded {len(got)}"
    assert out_rate >= 0.6 / decode_s, f"output {out_rate:.1f}/s, one decode takes {decode_s * 1000:.0f} ms"
    age = np.array([t - (m.header.stamp.sec + m.header.stamp.nanosec * 1e-9) for m, t in got])
    bound = 2 / out_rate + decode_s + 0.05      # two output intervals + one decode + transport
    print(f"offered {offered}, decoded {len(got)}, decode {decode_s * 1000:.0f} ms, age p95 "
          f"{np.percentile(age, 95) * 1000:.0f} ms, bound {bound * 1000:.0f} ms, stale {reports[-1].dropped_stale}")
    assert np.percentile(age, 95) <= bound, (np.percentile(age, 95), bound, decode_s)
    # without dropping, a best-effort queue of 5 would age frames by ~5 decode times
    assert reports[-1].dropped_stale >= offered - len(got) - 10
    assert reports[-1].max_fps == pytest.approx(1 / decode_s, rel=0.5)


def test_unavailable_provider_falls_back_to_cpu_with_one_warning(ros, encoder, photos):
    got, reports, _, out = _run(ros, "/provider_test", _frames(encoder, photos), 5.0, 1.0,
                                "-p", "providers:=[tensorrt, cpu]")
    assert got and reports, out
    warnings = [line for line in out.splitlines() if "TensorrtExecutionProvider" in line and "not available" in line]
    assert len(warnings) == 1, out
    assert "on CPUExecutionProvider" in out


def test_provider_names(tmp_path):
    from mcucoder_ros.codec.model import ModelError, resolve_providers

    assert resolve_providers(["cpu"]) == (["CPUExecutionProvider"], None)
    used, note = resolve_providers(["cuda"])
    assert used == ["CPUExecutionProvider"] and "CUDAExecutionProvider" in note
    with pytest.raises(ModelError, match="unknown execution provider 'gpu'"):
        resolve_providers(["gpu"])
