"""ros2 launch mcucoder_ros pipeline.launch.py source:=video input:=/path/clip.mp4
   ros2 launch mcucoder_ros pipeline.launch.py source:=serial input:=/dev/ttyACM0
   ros2 launch mcucoder_ros pipeline.launch.py source:=qemu-m7 input:=/path/clip.mp4
   ros2 launch mcucoder_ros pipeline.launch.py cameras:=cameras.yaml    (several cameras, one link)

Starts the nodes listed in mcucoder_ros.pipeline (the same set the one-process runner
`mcucoder-ros pipeline` starts) with config/pipeline.yaml: the host-side encoder_node
for video / images / camera / image_topic sources, the mcu_bridge_node for a real MCU
on a serial port or for the real firmware under QEMU (qemu-*: the firmware image runs
as a camera fed with the frames of `input`).

The model (and for qemu-* the firmware image) is looked up before any node starts, so
a missing one ends the launch at once with one line naming where it looked.  When a
pipeline node dies, the whole launch shuts down with the reason: a user is never left
with half a pipeline.
"""
import os
import shutil

from launch.actions import (
    DeclareLaunchArgument,
    ExecuteProcess,
    OpaqueFunction,
    RegisterEventHandler,
    SetEnvironmentVariable,
)
from launch.event_handlers import OnProcessExit
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription
from mcucoder_ros import resources
from mcucoder_ros.codec.model import default_model_dir
from mcucoder_ros.pipeline import (
    DECODER_REMAP_WITH_LINK,
    DOWNSTREAM,
    LINK_EMULATOR,
    NAMESPACE,
    QEMU_SOURCES,
    SOURCES,
    load_cameras,
    nodes_for,
    size_overrides,
    source_overrides,
)


class PipelineNodeDied(RuntimeError):
    """A pipeline process ended while the launch was running."""


def _end_launch_if_died(name: str, clean_exit_ends_nothing: bool = False):
    """OnProcessExit handler: a pipeline process that ends while the launch runs takes the
    launch down with it.  Raised, not a Shutdown action, so that `ros2 launch` logs the
    reason as an error and exits non-zero, as scripts that start it expect."""
    def handler(event, context):
        if context.is_shutdown or (clean_exit_ends_nothing and event.returncode == 0):
            return None
        raise PipelineNodeDied(f"{name} exited with status {event.returncode} (its error is above): stopping the "
                               "pipeline, which cannot run without it")
    return handler


def _arg(context, name: str) -> str:
    return LaunchConfiguration(name).perform(context)


def _qemu(source: str, input_spec: str, name: str, size=(0, 0, 0.0)):
    """The real firmware as a camera under QEMU, UART0 on a loopback socket: (actions, port).
    size: (width, height, scale) its emulated camera streams at (0: the video's own)."""
    from mcucoder_ros.qemu import firmware_elf, free_port
    target = source[len("qemu-"):]
    if not shutil.which("qemu-system-arm"):
        raise RuntimeError(f"source:={source} needs qemu-system-arm (apt-get install qemu-system-arm)")
    elf = firmware_elf(target)
    tcp = free_port()
    exe = os.path.join(resources.package_prefix(), "lib", "mcucoder_ros", "qemu_camera")
    qemu = ExecuteProcess(cmd=[exe, "--target", target, "--input", input_spec, "--port", str(tcp),
                               "--firmware", str(elf), "--width", str(int(size[0])), "--height", str(int(size[1])),
                               "--scale", str(float(size[2]))], name=name, output="screen")
    return [qemu, RegisterEventHandler(OnProcessExit(
        target_action=qemu, on_exit=_end_launch_if_died(name, clean_exit_ends_nothing=True)))], \
        f"socket://127.0.0.1:{tcp}"


def _node(name, namespace, params, overrides, remappings=()):
    node = Node(package="mcucoder_ros", executable=name, name=name, namespace=namespace,
                parameters=[params, overrides], output="screen", remappings=list(remappings))
    return [node, RegisterEventHandler(OnProcessExit(target_action=node, on_exit=_end_launch_if_died(name)))]


def _cameras(context, cameras_file, model_dir, trace, params, ns):
    """Several cameras: one source node per camera under <namespace>/<name>, one
    controller, link emulator and (batched) decoder for all."""
    if not os.path.exists(cameras_file):
        cameras_file = str(resources.config_file(cameras_file))
    cams = load_cameras(cameras_file)           # the runner's parser: the same errors, the same defaults
    actions = []
    for cam in cams:
        port = cam.input
        if cam.source in QEMU_SOURCES:
            more, port = _qemu(cam.source, cam.input or str(resources.data_path("clips/traffic.mp4")),
                               f"qemu_{cam.name}", (cam.width, cam.height, cam.scale))
            actions += more
        name = nodes_for(cam.source)[0][0]
        ov = cam.overrides(name, port)
        if model_dir and name == "encoder_node":
            ov["model_dir"] = model_dir
        actions += _node(name, f"{ns.rstrip('/')}/{cam.name}", params, ov)
    names = [c.name for c in cams]
    multi = {"bitrate_controller_node": {"cameras": names, "camera_weights": [float(c.weight) for c in cams],
                                         "camera_min_channels": [int(c.min_channels) for c in cams]},
             "decoder_node": {"cameras": names, "camera_info_urls": [c.camera_info_url for c in cams],
                              "input_topic": "latent_link" if trace else "latent_gated"},
             LINK_EMULATOR[0]: {"cameras": names, "trace": trace}}
    if model_dir:
        multi["decoder_node"]["model_dir"] = model_dir
    downstream = [n for n, _ in DOWNSTREAM]
    if trace:
        downstream.insert(len(downstream) - 1, LINK_EMULATOR[0])
    for name in downstream:
        actions += _node(name, ns, params, multi.get(name, {}))
    return actions


def _actions(context):
    model_dir = _arg(context, "model_dir")
    if model_dir and not os.path.isdir(model_dir):
        raise RuntimeError(f"model_dir:={model_dir} is not a folder")
    if not model_dir:
        default_model_dir()          # raises, naming every place looked in, before anything starts
    trace = _arg(context, "trace")
    if trace and not os.path.exists(trace):
        trace = str(resources.trace_file(trace if trace.endswith(".csv") else f"{trace}.csv"))
    params, ns = _arg(context, "params"), _arg(context, "namespace")
    if _arg(context, "cameras"):
        return _cameras(context, _arg(context, "cameras"), model_dir, trace, params, ns)
    source = _arg(context, "source")
    if source not in SOURCES:
        raise RuntimeError(f"source:={source} is not one of {', '.join(SOURCES)}")
    input_spec = _arg(context, "input")
    if not input_spec and (source == "video" or source in QEMU_SOURCES):
        input_spec = str(resources.data_path("clips/traffic.mp4"))     # the bundled sample clip
    if not input_spec and source in ("serial", "images"):
        raise RuntimeError(f"source:={source} needs input:=<{'serial port' if source == 'serial' else 'folder'}>")
    actions = []
    port = input_spec
    if source in QEMU_SOURCES:       # the real firmware as the camera, UART0 on a loopback socket
        size = (int(_arg(context, "width") or 0), int(_arg(context, "height") or 0), float(_arg(context, "scale") or 0))
        actions, port = _qemu(source, input_spec, f"qemu_{source[len('qemu-'):]}", size)
    overrides = source_overrides(source, port, _arg(context, "loop").lower() == "true")
    try:
        sized = size_overrides(source, int(_arg(context, "width") or 0), int(_arg(context, "height") or 0),
                               float(_arg(context, "scale") or 0))
    except ValueError as e:
        raise RuntimeError(f"width/height/scale: {e}") from None
    for name, ov in sized.items():
        overrides.setdefault(name, {}).update(ov)
    if model_dir:
        for name in ("encoder_node", "decoder_node"):
            overrides.setdefault(name, {})["model_dir"] = model_dir
    names = [name for name, _ in nodes_for(source)]
    if trace:       # an emulated link between controller and decoder
        names.insert(len(names) - 1, LINK_EMULATOR[0])
        overrides[LINK_EMULATOR[0]] = {"trace": trace}
    for name in names:
        actions += _node(name, ns, params, overrides.get(name, {}),
                         DECODER_REMAP_WITH_LINK.items() if trace and name == "decoder_node" else ())
    return actions


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument("source", default_value="video", description=" | ".join(SOURCES)),
        DeclareLaunchArgument("input", default_value="",
                              description="video file, image folder, camera index, or the MCU's serial port "
                                          "(video and qemu-*: empty plays the bundled sample clip)"),
        DeclareLaunchArgument("namespace", default_value=NAMESPACE, description="namespace of every node and topic"),
        DeclareLaunchArgument("params", default_value=str(resources.config_file("pipeline.yaml")),
                              description="parameters file (config/pipeline.yaml's format)"),
        DeclareLaunchArgument("model_dir", default_value="",
                              description="model folder for encoder and decoder (empty: the shipped model)"),
        DeclareLaunchArgument("cameras", default_value="",
                              description="several cameras on one link: a cameras YAML (config/cameras.yaml's "
                                          "format; a bundled name such as cameras.yaml), instead of source/input"),
        DeclareLaunchArgument("loop", default_value="false", description="restart a file source at its end"),
        DeclareLaunchArgument("width", default_value="0",
                              description="code frames at this width (0: the camera's own size; with height 0 the "
                                          "aspect is kept); host sources"),
        DeclareLaunchArgument("height", default_value="0",
                              description="code frames at this height (0: the camera's own size); host sources"),
        DeclareLaunchArgument("scale", default_value="0",
                              description="code frames scaled by this factor (0: width/height); host sources"),
        DeclareLaunchArgument("trace", default_value="",
                              description="bandwidth trace CSV, or the name of a bundled one (step, sine, "
                                          "outages, random_walk): adds link_emulator_node"),
        # DDS stays on this host unless the user widens it
        SetEnvironmentVariable("ROS_AUTOMATIC_DISCOVERY_RANGE",
                               os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")),
        OpaqueFunction(function=_actions),
    ])
