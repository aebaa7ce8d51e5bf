"""Real rclpy/DDS helpers for the ROS tests (DDS kept on localhost)."""
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"

BIN = Path(sys.executable).parent


class RosContext:
    """An rclpy context + node + executor of the test process."""

    def __init__(self, name="test_probe"):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        self.rclpy = rclpy
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def spin_until(self, cond, timeout=30.0):
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            self.executor.spin_once(timeout_sec=0.05)
            if cond():
                return True
        return False

    def spin_for(self, seconds):
        t0 = time.monotonic()
        while time.monotonic() - t0 < seconds:
            self.executor.spin_once(timeout_sec=0.02)

    def close(self):
        self.node.destroy_node()
        self.executor.shutdown()
        self.rclpy.try_shutdown(context=self.context)


def start(*args, **kw):
    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", PYTHONUNBUFFERED="1")
    return subprocess.Popen([str(BIN / args[0]), *map(str, args[1:])], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env, **kw)


def stop(proc, timeout=10):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.stdout.read() if proc.stdout else ""
