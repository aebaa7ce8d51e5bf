"""ros2 launch mcucoder_ros pipeline.launch.py source:=video input:=/path/clip.mp4
   ros2 launch mcucoder_ros pipeline.launch.py source:=serial input:=/dev/ttyACM0

Starts the nodes listed in mcucoder_ros.pipeline (the same set the one-process runner
`mcucoder-ros pipeline` starts) with config/pipeline.yaml: the host-side encoder_node
for video / images / camera / image_topic sources, the mcu_bridge_node for a real MCU
on a serial port.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription
from mcucoder_ros.pipeline import (
    DECODER_REMAP_WITH_LINK,
    HOST_SOURCES,
    LINK_EMULATOR,
    NAMESPACE,
    nodes_for,
    source_overrides,
)


def _nodes(context):
    source = LaunchConfiguration("source").perform(context)
    if source not in HOST_SOURCES + ("serial",):
        raise RuntimeError(f"source:={source} is not one of {', '.join(HOST_SOURCES + ('serial',))}")
    loop = LaunchConfiguration("loop").perform(context).lower() == "true"
    overrides = source_overrides(source, LaunchConfiguration("input").perform(context), loop)
    params = LaunchConfiguration("params").perform(context)
    ns = LaunchConfiguration("namespace").perform(context)
    trace = LaunchConfiguration("trace").perform(context)
    names = [name for name, _ in nodes_for(source)]
    if trace:       # an emulated link between controller and decoder
        names.insert(len(names) - 1, LINK_EMULATOR[0])
        overrides[LINK_EMULATOR[0]] = {"trace": trace}
    return [Node(package="mcucoder_ros", executable=name, name=name, namespace=ns,
                 parameters=[params, overrides.get(name, {})], output="screen",
                 remappings=list(DECODER_REMAP_WITH_LINK.items()) if trace and name == "decoder_node" else [])
            for name in names]


def generate_launch_description():
    share = get_package_share_directory("mcucoder_ros")
    return LaunchDescription([
        DeclareLaunchArgument("source", default_value="video",
                              description="video | images | camera | image_topic | serial"),
        DeclareLaunchArgument("input", default_value="",
                              description="video file, image folder, camera index, or the MCU's serial port"),
        DeclareLaunchArgument("namespace", default_value=NAMESPACE),
        DeclareLaunchArgument("params", default_value=os.path.join(share, "config", "pipeline.yaml")),
        DeclareLaunchArgument("loop", default_value="false"),
        DeclareLaunchArgument("trace", default_value="", description="bandwidth trace CSV: adds link_emulator_node"),
        # DDS stays on this host unless the user widens it
        SetEnvironmentVariable("ROS_AUTOMATIC_DISCOVERY_RANGE",
                               os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")),
        OpaqueFunction(function=_nodes),
    ])
