"""Parameters: declared with descriptors, validated at start-up and at run time."""
import pytest
from rclpy.parameter import Parameter
from ros_helpers import RosContext, start, stop


@pytest.fixture
def ctx():
    c = RosContext("param_probe")
    yield c
    c.close()


def test_invalid_start_parameters_are_refused(ctx):
    from mcucoder_ros.nodes.bitrate_controller_node import BitrateControllerNode
    from mcucoder_ros.nodes.encoder_node import EncoderNode
    with pytest.raises(Exception, match="headroom"):
        BitrateControllerNode(context=ctx.context, parameter_overrides=[Parameter("headroom", value=5.0)])
    with pytest.raises(ValueError, match="source"):
        EncoderNode(context=ctx.context, parameter_overrides=[Parameter("source", value="telepathy")])


def test_runtime_changes_validated(ctx):
    from mcucoder_ros.nodes.bitrate_controller_node import BitrateControllerNode
    node = BitrateControllerNode(context=ctx.context)
    try:
        r = node.set_parameters([Parameter("headroom", value=0.5)])[0]
        assert r.successful and node.ctrl.cfg.headroom == 0.5
        r = node.set_parameters([Parameter("up_hold_frames", value=-3)])[0]
        assert not r.successful and "up_hold_frames" in r.reason
        r = node.set_parameters([Parameter("qos_depth", value=3)])[0]
        assert not r.successful and "read-only" in r.reason
        desc = node.describe_parameter("headroom")
        assert desc.description and desc.floating_point_range[0].to_value == 1.0
    finally:
        node.destroy_node()


def test_node_executable_reports_bad_parameter_clearly():
    proc = start("bitrate_controller_node", "--ros-args", "-p", "headroom:=3.0")
    proc.wait(30)
    out = stop(proc)
    assert proc.returncode != 0 and "headroom" in out and "Traceback" not in out


def test_node_exits_cleanly_under_repeated_sigint():
    """Ctrl-C in a terminal reaches every process of the group and ros2 launch then sends
    its own SIGINT: one arriving while the interpreter exits (default handlers restored)
    killed a node with -2 and failed its launch (seen in CI with three cameras)."""
    import signal
    import time

    from conftest import ROOT
    proc = start("encoder_node", "--ros-args", "-p", "source:=video",
                 "-p", f"input:={ROOT / 'data' / 'clips' / 'traffic.mp4'}")
    time.sleep(3.0)
    proc.send_signal(signal.SIGINT)
    deadline = time.monotonic() + 20
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            proc.send_signal(signal.SIGINT)
        except ProcessLookupError:
            break
        time.sleep(0.002)
    out = stop(proc)
    assert proc.returncode == 0, f"exit {proc.returncode}:\n{out[-2000:]}"
    assert "stopping:" in out


@pytest.mark.parametrize("source", ["video", "serial"])
def test_every_value_of_the_params_file_reaches_its_node(tmp_path, source):
    """config/pipeline.yaml with each per-node value changed: the namespaced nodes of the
    runner must see the new values (a section key that does not match the node's full
    name is silently ignored by ROS)."""
    import yaml
    from conftest import ROOT

    from mcucoder_ros.pipeline import Pipeline
    cfg = yaml.safe_load((ROOT / "config" / "pipeline.yaml").read_text())
    changed = {"encoder_node": ("fps", 9.0), "mcu_bridge_node": ("fps", 4.0),
               "bitrate_controller_node": ("headroom", 0.8), "decoder_node": ("output_depth", 7)}
    for node, (name, value) in changed.items():
        section = cfg[f"/**/{node}"]["ros__parameters"]
        assert section[name] != value
        section[name] = value
    params = tmp_path / "changed.yaml"
    params.write_text(yaml.safe_dump(cfg))
    spec = str(ROOT / "data" / "clips" / "traffic.mp4") if source == "video" else "socket://127.0.0.1:9"
    p = Pipeline(source, spec, params)
    try:
        for node, (name, value) in changed.items():
            if node in p.nodes:
                assert p.nodes[node].get_parameter(name).value == value, node
    finally:
        p.shutdown()
