"""ros2 launch mcucoder_ros pipeline.launch.py source:=video input:=/path/clip.mp4

Starts the nodes listed in mcucoder_ros.pipeline (the same set the one-process
runner `mcucoder-ros pipeline` starts) with config/pipeline.yaml.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.substitutions import LaunchConfiguration, PythonExpression
from launch_ros.actions import Node

from mcucoder_ros.pipeline import NAMESPACE, NODES


def generate_launch_description():
    share = get_package_share_directory("mcucoder_ros")
    source = LaunchConfiguration("source")
    params = LaunchConfiguration("params")
    args = [
        DeclareLaunchArgument("source", default_value="video",
                              description="video | images | camera | image_topic"),
        DeclareLaunchArgument("input", default_value="", description="video file, image folder or camera index"),
        DeclareLaunchArgument("namespace", default_value=NAMESPACE),
        DeclareLaunchArgument("params", default_value=os.path.join(share, "config", "pipeline.yaml")),
        DeclareLaunchArgument("loop", default_value="false"),
        # DDS stays on this host unless the user widens it
        SetEnvironmentVariable("ROS_AUTOMATIC_DISCOVERY_RANGE",
                               os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")),
    ]
    nodes = []
    for name, _ in NODES:
        extra = {}
        if name == "encoder_node":
            extra = {"source": source, "input": LaunchConfiguration("input"),
                     "loop": PythonExpression(["'", LaunchConfiguration("loop"), "'.lower() == 'true'"])}
        nodes.append(Node(package="mcucoder_ros", executable=name, name=name,
                          namespace=LaunchConfiguration("namespace"), parameters=[params, extra] if extra else [params],
                          output="screen"))
    return LaunchDescription(args + nodes)
