"""camera_info: a 640x480 calibration (camera_calibration's YAML) scaled to the decoded
size, published by decoder_node beside image_decoded with the same stamp."""
import pytest
from ros_helpers import RosContext, start, stop

CALIBRATION = """\
image_width: 640
image_height: 480
camera_name: test_cam
camera_matrix:
  rows: 3
  cols: 3
  data: [600.0, 0.0, 320.0, 0.0, 580.0, 240.0, 0.0, 0.0, 1.0]
distortion_model: plumb_bob
distortion_coefficients:
  rows: 1
  cols: 5
  data: [-0.1, 0.01, 0.001, 0.002, 0.0]
rectification_matrix:
  rows: 3
  cols: 3
  data: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
projection_matrix:
  rows: 3
  cols: 4
  data: [590.0, 0.0, 321.0, 10.0, 0.0, 570.0, 241.0, 0.0, 0.0, 0.0, 1.0, 0.0]
"""


@pytest.fixture
def calib(tmp_path):
    p = tmp_path / "cam.yaml"
    p.write_text(CALIBRATION)
    return p


def test_scaled_to_224_and_to_another_size(calib):
    from mcucoder_ros.camera_info import load_calibration, scale_calibration
    cal = load_calibration(f"file://{calib}")
    c = scale_calibration(cal, 224, 224)
    sx, sy = 224 / 640, 224 / 480
    assert (c["width"], c["height"]) == (224, 224)
    assert c["K"] == pytest.approx([600 * sx, 0, 320 * sx, 0, 580 * sy, 240 * sy, 0, 0, 1])
    assert c["P"] == pytest.approx([590 * sx, 0, 321 * sx, 10 * sx, 0, 570 * sy, 241 * sy, 0, 0, 0, 1, 0])
    assert c["D"] == cal["D"] and c["R"] == cal["R"]
    c = scale_calibration(cal, 320, 240)
    assert c["K"] == pytest.approx([300, 0, 160, 0, 290, 120, 0, 0, 1])


def test_bad_calibration_files(tmp_path):
    from mcucoder_ros.camera_info import CalibrationError, load_calibration
    with pytest.raises(CalibrationError, match="cannot read"):
        load_calibration(str(tmp_path / "missing.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("image_width: 640\nimage_height: 480\ncamera_matrix: {data: [1, 2]}\n")
    with pytest.raises(CalibrationError, match="camera_matrix"):
        load_calibration(str(bad))
    with pytest.raises(CalibrationError, match="only file://"):
        load_calibration("package://somewhere/cam.yaml")


def test_decoder_node_publishes_camera_info_with_the_image(calib, encoder, photo):
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo, Image

    from mcucoder_ros.msg import LatentChannels
    from mcucoder_ros.nodes.common import frame_to_msg
    ros = RosContext("caminfo_probe")
    images, infos = [], []
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    ros.node.create_subscription(Image, "/caminfo/image_decoded", images.append, qos)
    ros.node.create_subscription(CameraInfo, "/caminfo/camera_info", infos.append, qos)
    pub = ros.node.create_publisher(LatentChannels, "/caminfo/latent_gated", qos_profile_sensor_data)
    proc = start("decoder_node", "--ros-args", "-r", "__ns:=/caminfo", "-p", f"camera_info_url:=file://{calib}",
                 "-p", "output_width:=320", "-p", "output_height:=240")
    try:
        assert ros.spin_until(lambda: pub.get_subscription_count() > 0, 30)
        frame = encoder.encode(photo, 6, 7)
        for _ in range(60):
            pub.publish(frame_to_msg(frame, ros.node.get_clock().now().to_msg(), "cam_optical"))
            if ros.spin_until(lambda: images and infos, 1.0):
                break
    finally:
        out = stop(proc)
        ros.close()
    assert images and infos, out
    img, info = images[0], infos[0]
    assert (info.header.stamp, info.header.frame_id) == (img.header.stamp, img.header.frame_id)
    assert (info.width, info.height) == (img.width, img.height) == (320, 240)
    assert list(info.k) == pytest.approx([300, 0, 160, 0, 290, 120, 0, 0, 1])
    assert info.distortion_model == "plumb_bob" and list(info.d) == pytest.approx([-0.1, 0.01, 0.001, 0.002, 0.0])


def test_without_url_one_line_and_no_camera_info():
    from diagnostic_msgs.msg import DiagnosticArray
    ros = RosContext("caminfo_none_probe")
    diags = []
    ros.node.create_subscription(DiagnosticArray, "/diagnostics", diags.append, 10)
    proc = start("decoder_node", "--ros-args", "-r", "__ns:=/caminfo_none")
    try:
        up = ros.spin_until(lambda: any("caminfo_none" in st.name for d in diags for st in d.status), 60)
        publishers = ros.node.get_publishers_info_by_topic("/caminfo_none/camera_info")
    finally:
        out = stop(proc)
        ros.close()
    assert up, out
    assert not publishers
    assert out.count("camera_info_url not set") == 1, out
