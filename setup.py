"""pip install of the mcucoder_ros Python package (codec library, CLI, ROS nodes).

ROS users build the same package with colcon (package.xml + CMakeLists.txt), which
also generates the messages; `make setup` does both into .venv/.
"""
from setuptools import Extension, find_packages, setup

setup(
    name="mcucoder_ros",
    version="0.1.0",
    description="Adaptive-bitrate learned video compression from microcontroller cameras to ROS 2",
    license="MIT",
    python_requires=">=3.10",
    packages=find_packages(include=["mcucoder_ros", "mcucoder_ros.*"]),
    # the rANS channel decoder in C; optional: without a compiler the Python one is used
    ext_modules=[Extension("mcucoder_ros.codec._rans", ["mcucoder_ros/codec/_rans.c"], optional=True,
                           extra_compile_args=["-O2"])],
    install_requires=[
        "numpy>=1.24",
        "opencv-python-headless>=4.8",
        "onnxruntime>=1.17",
        "onnx>=1.15",            # the INT8 decoder's channels-last rewrite at load time
        "bjontegaard>=1.3",
        "matplotlib>=3.7",
        "tqdm>=4.60",
        "pyserial>=3.5",
        "pyyaml>=6",
        "rosbags>=0.10",         # rosbag2 (MCAP, sqlite3) without a ROS install
        "mcap>=1.1",             # reading MCAP bags that were cut off (no index)
        "cryptography>=41",      # ChaCha20-Poly1305 on the sealed serial link (protocol 2)
    ],
    extras_require={
        # mvtb-data and scikit-image hold the offline training and held-out photos
        "train": ["torch>=2.1", "pytorch-msssim>=1.0", "mvtb-data", "scikit-image"],
        "test": ["pytest>=8", "hypothesis>=6.100", "ruff>=0.6", "mcap-ros2-support>=0.5"],
    },
    entry_points={"console_scripts": [
        "mcucoder = mcucoder_ros.cli:main",
        "mcucoder-ros = mcucoder_ros.ros_cli:main",
        "encoder_node = mcucoder_ros.nodes.encoder_node:main",
        "bitrate_controller_node = mcucoder_ros.nodes.bitrate_controller_node:main",
        "decoder_node = mcucoder_ros.nodes.decoder_node:main",
        "mcu_bridge_node = mcucoder_ros.nodes.mcu_bridge_node:main",
        "link_emulator_node = mcucoder_ros.nodes.link_emulator_node:main",
        "network_sender_node = mcucoder_ros.nodes.network_sender_node:main",
        "network_receiver_node = mcucoder_ros.nodes.network_receiver_node:main",
    ]},
)
