import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
# A DDS domain of its own per test session: runs on one machine never hear each other.
os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))
ROOT = Path(__file__).resolve().parents[1]
VECTORS = ROOT / "test" / "vectors"
SAMPLES = ROOT / "data" / "samples"


@pytest.fixture
def ros():
    """An rclpy context with a probe node and an executor in the test process."""
    from ros_helpers import RosContext
    ctx = RosContext()
    yield ctx
    ctx.close()


@pytest.fixture(scope="session")
def encoder():
    from mcucoder_ros.codec.model import EncoderModel
    return EncoderModel.load()


@pytest.fixture(scope="session")
def decoder():
    from mcucoder_ros.codec.model import DecoderModel
    return DecoderModel.load(threads=2)


@pytest.fixture(scope="session")
def photo():
    from mcucoder_ros.codec.images import load_rgb
    return load_rgb(SAMPLES / "astronaut.png")


@pytest.fixture(scope="session")
def photos():
    from mcucoder_ros.codec.images import load_rgb
    return [load_rgb(p) for p in sorted(SAMPLES.glob("*.png"))[:6]]


def read_vector(name, dtype, shape=None):
    a = np.fromfile(VECTORS / name, dtype=dtype)
    return a.reshape(shape) if shape else a
