"""The camera's own size through the ROS pipeline (real rclpy, separate processes):
image_decoded at the source's size, the aspect kept when resizing, compressed input,
camera_info as calibrated."""
import re

import cv2
import numpy as np
import pytest
from conftest import ROOT
from ros_helpers import start, stop

CLIP = ROOT / "data" / "clips" / "traffic.mp4"


def _clip_640x480(path, frames=30):
    """A 640x480 clip of real video: the centre of mvtb-data's traffic sequence (704x576)
    where installed, else the bundled clip enlarged."""
    from mcucoder_ros.evaluation import iter_video
    src = None
    try:
        from importlib.resources import files
        cand = files("mvtbdata") / "images" / "traffic_sequence.mp4"
        if cand.is_file():
            src = str(cand)
    except ModuleNotFoundError:
        pass
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 15, (640, 480))
    for _, f in iter_video(src or str(CLIP), frames):
        if src:
            y, x = (f.shape[0] - 480) // 2, (f.shape[1] - 640) // 2
            f = f[y:y + 480, x:x + 640]
        else:
            f = cv2.resize(f, (640, 480), interpolation=cv2.INTER_CUBIC)
        vw.write(np.ascontiguousarray(f[..., ::-1]))
    vw.release()
    return path


def _every_frame_params(tmp_path, fps):
    """pipeline.yaml at `fps`, with every frame decoded in order (as for a replay): no
    frame skipped for a slow receiver or dropped as stale, whatever else runs here."""
    p = tmp_path / "params.yaml"
    text = (ROOT / "config" / "pipeline.yaml").read_text()
    assert "fps: 15.0" in text and "follow_receiver_fps: true" in text and "output_depth: 10" in text
    p.write_text(text.replace("fps: 15.0", f"fps: {fps}", 1).replace("follow_receiver_fps: true",
                                                                     "follow_receiver_fps: false")
                 .replace("output_depth: 10", "output_depth: 10\n    drop_stale: false"))
    return p


def _runner_line(out):
    m = re.search(r"frames encoded (\d+), decoded (\d+), malformed (\d+), dropped stale (\d+), "
                  r"skipped for the receiver (\d+), skipped for the link (\d+)", out)
    assert m, out
    return tuple(map(int, m.groups()))


def _collect(ros, topic="/mcucoder/image_decoded"):
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image
    got = []
    ros.node.create_subscription(Image, topic, got.append, QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE))
    return got


def test_640x480_clip_every_frame_at_its_own_size(ros, tmp_path, encoder, decoder, capsys):
    """Acceptance: a 640x480 clip through the pipeline (source video): image_decoded is
    640x480, every frame decoded, and MS-SSIM against the source frames at 640x480."""
    from mcucoder_ros.codec.metrics import ms_ssim
    from mcucoder_ros.evaluation import iter_video
    clip = _clip_640x480(tmp_path / "vga.mp4")
    got = _collect(ros)
    proc = start("mcucoder-ros", "pipeline", "--source", "video", "--input", clip, "--params",
                 _every_frame_params(tmp_path, 5.0))
    try:
        assert ros.spin_until(lambda: proc.poll() is not None, timeout=120), "runner did not end at end of input"
        ros.spin_for(0.5)
    finally:
        out = stop(proc)
    assert proc.returncode == 0, out
    enc, dec, bad, stale, skip_rx, skip_link = _runner_line(out)
    assert enc == 30 and dec == 30 and bad == stale == skip_rx == skip_link == 0, out
    assert len(got) == 30, f"{len(got)} of 30 frames on image_decoded"
    frames = [f for _, f in iter_video(str(clip), 30)]
    by_stamp = sorted(got, key=lambda m: (m.header.stamp.sec, m.header.stamp.nanosec))
    scores = []
    for i, m in enumerate(by_stamp):
        assert (m.width, m.height, m.encoding, m.step) == (640, 480, "rgb8", 640 * 3)
        img = np.frombuffer(m.data, np.uint8).reshape(480, 640, 3)
        assert np.array_equal(img, decoder.decode(encoder.encode(frames[i], 12))), f"frame {i}"
        scores.append(ms_ssim(frames[i], img))
    with capsys.disabled():
        print(f"\n640x480 clip through the pipeline: {len(scores)} of 30 frames decoded at 640x480, MS-SSIM against "
              f"the source at 640x480: mean {np.mean(scores):.4f}, min {np.min(scores):.4f} (k = 12)")
    assert np.mean(scores) > 0.93


def test_runner_keeps_the_aspect_when_resizing(ros):
    """352x288 (11:9) asked to be 320 wide comes out 320x262, not squashed."""
    got = _collect(ros)
    proc = start("mcucoder-ros", "pipeline", "--source", "video", "--input", CLIP, "--width", "320",
                 "--duration", "4")
    try:
        assert ros.spin_until(lambda: proc.poll() is not None, timeout=60)
        ros.spin_for(0.3)
    finally:
        out = stop(proc)
    assert proc.returncode == 0, out
    assert got and {(m.width, m.height) for m in got} == {(320, 262)}, out
    assert "resized to 320xH (aspect kept)" in out


def test_a_real_device_refuses_a_host_size_clearly():
    """A serial device codes its own camera's size: --width asked of it is a clear error."""
    proc = start("mcucoder-ros", "pipeline", "--source", "serial", "--input", "/dev/null", "--width", "320")
    proc.wait(60)
    out = stop(proc)
    assert proc.returncode != 0 and "its own camera configuration" in out, out


def test_qemu_source_streams_the_size_asked(ros):
    """qemu-m7 with --width 320: the emulated camera streams 320x262 (aspect kept), and
    image_decoded has that size."""
    got = _collect(ros)
    proc = start("mcucoder-ros", "pipeline", "--source", "qemu-m7", "--input", CLIP, "--width", "320",
                 "--max-frames", "6", "--duration", "25")
    try:
        assert ros.spin_until(lambda: len(got) >= 3 or proc.poll() is not None, timeout=90), "no frames"
    finally:
        out = stop(proc)
    assert got and {(m.width, m.height) for m in got} == {(320, 262)}, out[-2000:]


def test_compressed_image_topic_and_an_unknown_encoding(ros, tmp_path):
    """image_transport's compressed topic in; an encoding the node cannot take is
    counted and named once in the log, and the stream goes on."""
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CompressedImage

    from mcucoder_ros.codec.images import load_rgb
    params = tmp_path / "p.yaml"
    params.write_text((ROOT / "config" / "pipeline.yaml").read_text().replace(
        "image_transport: raw", "image_transport: compressed"))
    proc = start("mcucoder-ros", "pipeline", "--source", "image_topic", "--params", params)
    got = _collect(ros)
    try:
        qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT)
        pub = ros.node.create_publisher(CompressedImage, "/mcucoder/image_raw/compressed", qos)
        assert ros.spin_until(lambda: pub.get_subscription_count() > 0, 30), "encoder did not subscribe"
        src = cv2.resize(load_rgb(ROOT / "data" / "samples" / "coffee.png"), (320, 240))
        data = cv2.imencode(".jpg", src[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
        for i in range(100):
            m = CompressedImage(format="jpeg", data=data)
            m.header.stamp.sec = 1000 + i
            pub.publish(m)
            if ros.spin_until(lambda: got, 0.3):
                break
        assert got, "no decoded image from the compressed topic"
        bad = CompressedImage(format="16UC1; compressedDepth png", data=b"\0" * 20)
        pub.publish(bad)
        ros.spin_for(1.0)
    finally:
        out = stop(proc)
    assert (got[0].width, got[0].height) == (320, 240)
    assert "unsupported CompressedImage format '16UC1; compressedDepth png'" in out, out


def test_camera_info_as_calibrated_at_the_calibrated_size(ros, tmp_path, encoder):
    """Pictures of the calibrated size: camera_info is the calibration itself, unscaled."""
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo

    from mcucoder_ros.msg import LatentChannels
    from mcucoder_ros.nodes.common import frame_to_msg
    calib = tmp_path / "cam.yaml"
    calib.write_text("image_width: 640\nimage_height: 480\ncamera_name: cam\n"
                     "camera_matrix: {rows: 3, cols: 3, data: [600, 0, 321, 0, 580, 239, 0, 0, 1]}\n"
                     "distortion_model: plumb_bob\n"
                     "distortion_coefficients: {rows: 1, cols: 5, data: [-0.1, 0.01, 0, 0, 0]}\n"
                     "projection_matrix: {rows: 3, cols: 4, data: [600, 0, 321, 0, 0, 580, 239, 0, 0, 0, 1, 0]}\n")
    images, infos = _collect(ros, "/sized/image_decoded"), []
    ros.node.create_subscription(CameraInfo, "/sized/camera_info", infos.append,
                                 QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
    pub = ros.node.create_publisher(LatentChannels, "/sized/latent_gated", qos_profile_sensor_data)
    proc = start("decoder_node", "--ros-args", "-r", "__ns:=/sized", "-p", f"camera_info_url:=file://{calib}")
    try:
        assert ros.spin_until(lambda: pub.get_subscription_count() > 0, 30)
        frame = encoder.encode(np.full((480, 640, 3), 120, np.uint8), 4, 3)
        for _ in range(60):
            pub.publish(frame_to_msg(frame, ros.node.get_clock().now().to_msg(), "cam_optical"))
            if ros.spin_until(lambda: images and infos, 1.0):
                break
    finally:
        out = stop(proc)
    assert images and infos, out
    assert (images[0].width, images[0].height) == (infos[0].width, infos[0].height) == (640, 480)
    assert list(infos[0].k) == pytest.approx([600, 0, 321, 0, 580, 239, 0, 0, 1])
