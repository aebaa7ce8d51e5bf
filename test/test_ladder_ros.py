"""The resolution ladder through the ROS pipeline (real rclpy, separate processes): on a
link too thin for one channel at the camera's size the controller asks the encoder for
1/2 or 1/4 of it, and image_decoded keeps the camera's size on every frame."""
import cv2
import numpy as np
from conftest import ROOT
from ros_helpers import start, stop

CLIP = ROOT / "data" / "clips" / "traffic.mp4"


def test_image_decoded_keeps_the_camera_size_through_scale_changes(ros, tmp_path):
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from mcucoder_ros.evaluation import iter_video
    from mcucoder_ros.msg import BitrateStatus
    clip = tmp_path / "qvga.avi"
    vw = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 15, (320, 240))
    for _, f in iter_video(str(CLIP), 90):
        vw.write(np.ascontiguousarray(cv2.resize(f, (320, 240), interpolation=cv2.INTER_AREA)[..., ::-1]))
    vw.release()
    # 320x240 at 5 frames/s: one channel at the camera's size is ~21 kbit/s, at 1/2 ~7
    trace = tmp_path / "thin.csv"
    trace.write_text("t,bandwidth_bps,loss,delay_ms\n0,400000,0,10\n5,12000,0,10\n13,400000,0,10\n22,400000,0,10\n")
    params = tmp_path / "params.yaml"
    text = (ROOT / "config" / "pipeline.yaml").read_text()
    assert "fps: 15.0" in text
    params.write_text(text.replace("fps: 15.0", "fps: 5.0", 1))
    images, status = [], []
    qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
    ros.node.create_subscription(Image, "/mcucoder/image_decoded", images.append, qos)
    ros.node.create_subscription(BitrateStatus, "/mcucoder/bitrate_status", status.append, qos)
    proc = start("mcucoder-ros", "pipeline", "--source", "video", "--input", clip, "--loop", "--trace", trace,
                 "--params", params, "--duration", "22")
    try:
        assert ros.spin_until(lambda: proc.poll() is not None, timeout=120), "runner did not stop"
        ros.spin_for(0.5)
    finally:
        out = stop(proc)
    assert proc.returncode == 0, out
    assert len(images) >= 40, out
    assert {(m.width, m.height, m.encoding) for m in images} == {(320, 240, "rgb8")}, \
        "image_decoded changed size with the scale"
    scales = [(s.header.stamp.sec + s.header.stamp.nanosec * 1e-9, s.frame_scale, s.channels) for s in status]
    t0 = scales[0][0]
    thin = [sc for t, sc, k in scales if 7 <= t - t0 < 13 and k > 0]
    assert thin and all(sc > 1 for sc in thin), f"frames at the camera's size on a 12 kbit/s link: {thin}"
    assert any(sc == 1 for t, sc, k in scales if t - t0 >= 17 and k > 0), "never back at the camera's size"
    sent_thin = sum(1 for t, sc, k in scales if 7 <= t - t0 < 13 and k > 0)
    assert sent_thin >= 20, f"only {sent_thin} of ~30 frames sent on the thin stretch"
