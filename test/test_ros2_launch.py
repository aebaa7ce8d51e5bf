"""`ros2 launch mcucoder_ros pipeline.launch.py` as a ROS 2 user runs it.

The package is built by colcon in a fresh workspace and run from `install/setup.bash`
in a Python environment of its own, where the package is not pip-installed and no
MCUCODER_* variable is set: the nodes must find the model, config and firmware images
the ROS way.  With the real launch, launch_ros and ros2cli: from a ROS 2 install when
one is sourced (ROS_DISTRO, ros2 and colcon on PATH), else from their sources in
../shared/ros2-launch, installed into that environment (its README's verified steps).
A plain rclpy subscriber of this process checks what comes out.

The README's "ROS 2" section states these steps.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAUNCH_SOURCES = Path(os.environ.get("MCUCODER_ROS2_LAUNCH_SRC", ROOT.parent / "shared" / "ros2-launch"))
# the packages of ../shared/ros2-launch, in install order (its README)
LAUNCH_PACKAGES = ("launch/launch", "launch/launch_xml", "launch/launch_yaml", "launch_ros/launch_ros",
                   "launch_ros/ros2launch", "ros2cli/ros2cli", "ros2cli/ros2pkg", "ros2cli/ros2node",
                   "ros2cli/ros2topic", "ros2cli/ros2param", "ros2cli/ros2run", "rosidl_runtime_py")
CLIP = ROOT / "data" / "clips" / "traffic.mp4"
CLIP_FRAMES = 90
ERROR_MARKS = ("[ERROR]", "Traceback", "terminate called", "Fatal Python error", "RCLError", "Aborted")


def _mode() -> str:
    if os.environ.get("ROS_DISTRO") and shutil.which("ros2") and shutil.which("colcon"):
        return "system"
    if (LAUNCH_SOURCES / "launch_ros").is_dir():
        return "shared"
    pytest.skip("needs a ROS 2 install (ROS_DISTRO set, ros2 and colcon on PATH) or the launch tools' sources "
                f"in {LAUNCH_SOURCES} (neither is here)")


def _run(cmd, log: Path, env=None, cwd=None, timeout=900):
    with open(log, "w") as f:
        r = subprocess.run([str(c) for c in cmd], stdout=f, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                           timeout=timeout)
    if r.returncode:
        pytest.fail(f"{' '.join(map(str, cmd[:4]))} ... failed ({r.returncode}):\n{log.read_text()[-3000:]}")


def _copy_project(dest: Path) -> None:
    """The project's files as a clone has them (tracked and new, not ignored ones)."""
    try:
        files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, check=True,
                               capture_output=True, text=True).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError):
        files = None
    if files is None:
        shutil.copytree(ROOT, dest, ignore=shutil.ignore_patterns(".venv", "build", "install", "log", "out",
                                                                  ".git", "__pycache__"))
        return
    for rel in filter(None, files):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


class Workspace:
    """A colcon workspace with the package built, and the environment to run it in."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.mode = _mode()
        self.ws = tmp / "ws"
        self.logs = tmp / "logs"
        self.logs.mkdir()
        src = self.ws / "src"
        src.mkdir(parents=True)
        _copy_project(src / "mcucoder_ros")
        env = {k: v for k, v in os.environ.items() if not k.startswith("MCUCODER_")}
        cmake_args = ["-DBUILD_TESTING=OFF"]
        if self.mode == "shared":
            self.venv = tmp / "venv"
            python = getattr(sys, "_base_executable", sys.executable)
            _run([python, "-m", "venv", self.venv], self.logs / "venv.log")
            pip = [self.venv / "bin" / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check"]
            _run(pip + ["-r", ROOT / "requirements-ros.txt", "-r", ROOT / "test" / "ros2_launch_requirements.txt"],
                 self.logs / "pip.log")
            # pip writes build files next to each setup.py: install from a copy
            tools = tmp / "ros2-launch"
            shutil.copytree(LAUNCH_SOURCES, tools)
            _run(pip + ["--no-deps", "--no-build-isolation"] + [tools / p for p in LAUNCH_PACKAGES],
                 self.logs / "pip-launch.log")
            shutil.copytree(tools / "rcl_interfaces" / "composition_interfaces", src / "composition_interfaces")
            env.update(PATH=f"{self.venv / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}", AMENT_PREFIX_PATH=str(self.venv))
            cmake_args += [f"-DPython3_EXECUTABLE={self.venv / 'bin' / 'python'}",
                           f"-DCMAKE_PROJECT_INCLUDE={ROOT / 'cmake' / 'ros_wheels_fix.cmake'}"]
        _run(["colcon", "build", "--executor", "sequential", "--cmake-args", *cmake_args],
             self.logs / "colcon.log", env=env, cwd=self.ws)

    def env(self) -> dict:
        """A clean environment: only the DDS settings of this test session (and a log
        folder) beside what sourcing the venv and install/setup.bash sets."""
        keep = ("HOME", "LANG", "TERM", "ROS_DOMAIN_ID")
        env = {k: os.environ[k] for k in keep if k in os.environ}
        if self.mode == "system":          # the sourced ROS install stays, nothing of ours
            env = {k: v for k, v in os.environ.items() if not k.startswith("MCUCODER_")}
        env.update(ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", ROS_HOME=str(self.tmp / "ros_home"),
                   PYTHONUNBUFFERED="1")
        env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
        return env

    def shell(self, *args) -> list[str]:
        activate = f". {self.venv}/bin/activate && " if self.mode == "shared" else ""
        return ["bash", "-c", f'{activate}. {self.ws}/install/setup.bash && exec "$@"', "bash", *map(str, args)]

    def start(self, name: str, *args) -> Process:
        return Process(self.shell(*args), self.logs / f"{name}.log", self.env(), cwd=self.tmp)

    def run(self, *args, timeout=60) -> subprocess.CompletedProcess:
        return subprocess.run(self.shell(*args), env=self.env(), capture_output=True, text=True, timeout=timeout,
                              cwd=self.tmp)      # not the checkout: nothing may come from there

    def ros2(self, *args, tries=3) -> subprocess.CompletedProcess:
        """A ros2 CLI command against the running graph, without the daemon: each call
        discovers the graph anew, in 0.5 s by default, which a loaded machine can miss;
        given 3 s (`--spin-time`), and asked again after a miss, as a user would."""
        for _ in range(tries):
            got = self.run("ros2", *args, "--no-daemon", "--spin-time", "3")
            if got.returncode == 0 or "not found" not in got.stdout + got.stderr:
                break
        return got

class Process:
    """A command in a process group of its own, stopped with SIGINT as Ctrl-C does."""

    def __init__(self, cmd, log: Path, env, cwd):
        self.log = log
        self._out = open(log, "w")
        self.proc = subprocess.Popen(cmd, stdout=self._out, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                     start_new_session=True)

    def interrupt(self, timeout=20) -> int:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            pytest.fail(f"did not stop within {timeout} s of SIGINT:\n{self.output()[-3000:]}")

    def wait(self, timeout) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.interrupt()
            pytest.fail(f"still running after {timeout} s:\n{self.output()[-3000:]}")

    def output(self) -> str:
        self._out.flush()
        return self.log.read_text()

    def error_lines(self) -> list[str]:
        return [ln for ln in self.output().splitlines() if any(m in ln for m in ERROR_MARKS)]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return Workspace(tmp_path_factory.mktemp("ros2_launch"))


def _image_counter(ros, topic):
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image
    stamps = []
    ros.node.create_subscription(Image, topic, lambda m: stamps.append((m.header.stamp.sec, m.header.stamp.nanosec,
                                                                         m.width, m.height)),
                                 QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
    return stamps


def _every_frame_then_clean_exit(ros, launch, stamps, while_running=None, size=(352, 288)):
    """The whole clip on image_decoded, nothing more; `while_running()` checks the idle
    pipeline; then Ctrl-C: status 0, every node finished cleanly, no error line."""
    def where_frames_went():
        """On a miss: every node's counters as it logged them when it stopped (sent,
        skipped and why, dropped stale, decoded), so the failure says where a frame went."""
        launch.interrupt()
        stops = [ln for ln in launch.output().splitlines() if "stopping:" in ln]
        return f"{len(stamps)} of {CLIP_FRAMES} frames on image_decoded; the nodes' counters:\n" + "\n".join(stops) + \
            f"\n{launch.output()[-3000:]}"

    try:
        if not ros.spin_until(lambda: len(stamps) >= CLIP_FRAMES or launch.proc.poll() is not None, timeout=90):
            pytest.fail(f"in 90 s: {where_frames_went()}")
        ros.spin_for(1.0)                       # nothing more than the clip may come
        assert launch.proc.poll() is None, f"the launch ended by itself:\n{launch.output()[-3000:]}"
        if not (len(stamps) == CLIP_FRAMES and len(set(stamps)) == CLIP_FRAMES):
            pytest.fail(where_frames_went())
        assert {s[2:] for s in stamps} == {size}       # the clip's own size
        if while_running:
            while_running()
    finally:
        rc = launch.interrupt()
    out = launch.output()
    assert rc == 0, out[-3000:]
    assert not launch.error_lines(), "\n".join(launch.error_lines())
    assert "process has died" not in out
    assert out.count("process has finished cleanly") >= 3, out[-3000:]


def _every_frame_params(workspace):
    """The shipped pipeline.yaml with every frame decoded in order, as for a replay: a
    2-core host without AVX-512 decodes the clip's own 352x288 slower than its 15
    frames/s, and would skip or drop some live."""
    shipped = workspace.ws / "install" / "mcucoder_ros" / "share" / "mcucoder_ros" / "config" / "pipeline.yaml"
    params = workspace.tmp / "every_frame.yaml"
    text = shipped.read_text()
    assert "follow_receiver_fps: true" in text and "output_depth: 10" in text
    params.write_text(text.replace("follow_receiver_fps: true", "follow_receiver_fps: false")
                      .replace("output_depth: 10", "output_depth: 10\n    drop_stale: false"))
    return params


def test_launch_video_every_frame_params_and_clean_ctrl_c(ros, workspace):
    params = _every_frame_params(workspace)
    stamps = _image_counter(ros, "/mcucoder/image_decoded")
    launch = workspace.start("launch_video", "ros2", "launch", "mcucoder_ros", "pipeline.launch.py", "source:=video",
                             f"input:={CLIP}", f"params:={params}")

    def cli_against_the_pipeline():
        expected = {"/mcucoder/encoder_node", "/mcucoder/bitrate_controller_node", "/mcucoder/decoder_node"}
        for _ in range(4):              # a daemon-less call may see part of the graph: asked again
            nodes = workspace.ros2("node", "list")
            if expected <= set(nodes.stdout.split()):
                break
        assert expected <= set(nodes.stdout.split()), nodes.stdout + nodes.stderr
        fps = workspace.ros2("param", "get", "/mcucoder/encoder_node", "fps")
        assert fps.returncode == 0 and "15.0" in fps.stdout, fps.stdout + fps.stderr    # from config/pipeline.yaml
        threads = workspace.ros2("param", "get", "/mcucoder/decoder_node", "threads")
        assert threads.returncode == 0 and "2" in threads.stdout, threads.stdout + threads.stderr

    _every_frame_then_clean_exit(ros, launch, stamps, cli_against_the_pipeline)
    assert f"end of input after {CLIP_FRAMES} frames" in launch.output()


def test_the_package_and_its_data_come_from_the_colcon_install(workspace):
    got = workspace.run("python3", "-c", "import mcucoder_ros, mcucoder_ros.codec.model as m, mcucoder_ros.pipeline "
                        "as p; print(mcucoder_ros.__file__); print(m.default_model_dir()); "
                        "print(p.default_params_file())")
    assert got.returncode == 0, got.stderr
    install = str(workspace.ws / "install" / "mcucoder_ros")
    assert all(line.startswith(install) for line in got.stdout.split()), got.stdout


def test_launch_qemu_m7_every_frame_and_clean_ctrl_c(ros, workspace):
    if not (shutil.which("qemu-system-arm") and shutil.which("arm-none-eabi-gcc")):
        pytest.skip("needs qemu-system-arm and gcc-arm-none-eabi (apt); .ci/run installs them")
    stamps = _image_counter(ros, "/mcucoder/image_decoded")
    launch = workspace.start("launch_qemu", "ros2", "launch", "mcucoder_ros", "pipeline.launch.py",
                             "source:=qemu-m7", f"input:={CLIP}", f"params:={_every_frame_params(workspace)}")
    _every_frame_then_clean_exit(ros, launch, stamps, size=(352, 288))     # the clip's own size
    out = launch.output()
    assert "cortex-m7" in out and f"firmware (m7): frames {CLIP_FRAMES}" in out, out[-3000:]


def test_ros2_run_decoder_node_against_a_launched_pipeline(ros, workspace):
    viewer = _image_counter(ros, "/mcucoder/image_viewer")
    launch = workspace.start("launch_loop", "ros2", "launch", "mcucoder_ros", "pipeline.launch.py", "source:=video",
                             f"input:={CLIP}", "loop:=true")
    run = None
    try:
        stamps = _image_counter(ros, "/mcucoder/image_decoded")
        assert ros.spin_until(lambda: len(stamps) > 0, timeout=60), launch.output()[-3000:]
        run = workspace.start("ros2_run", "ros2", "run", "mcucoder_ros", "decoder_node", "--ros-args",
                              "-r", "__ns:=/mcucoder", "-r", "__node:=viewer_decoder",
                              "-r", "image_decoded:=image_viewer")
        assert ros.spin_until(lambda: len(viewer) >= 10, timeout=60), run.output()[-3000:]
        got = workspace.ros2("param", "get", "/mcucoder/viewer_decoder", "drop_stale")
        assert got.returncode == 0 and "True" in got.stdout, got.stdout + got.stderr
        assert run.interrupt() == 0, run.output()[-3000:]
        assert not run.error_lines(), "\n".join(run.error_lines())
    finally:
        if run is not None and run.proc.poll() is None:
            run.interrupt()
        rc = launch.interrupt()
    assert rc == 0 and not launch.error_lines(), launch.output()[-3000:]


def test_launch_without_model_ends_at_once_naming_where_it_looked(workspace):
    models = workspace.ws / "install" / "mcucoder_ros" / "share" / "mcucoder_ros" / "models"
    aside = workspace.tmp / "models_aside"
    models.rename(aside)
    try:
        t0 = time.monotonic()
        launch = workspace.start("launch_no_model", "ros2", "launch", "mcucoder_ros", "pipeline.launch.py",
                                 "source:=video", f"input:={CLIP}")
        rc = launch.wait(timeout=20)
        took = time.monotonic() - t0
    finally:
        aside.rename(models)
    errors = launch.error_lines()
    assert rc != 0 and took < 5.0, (rc, took, launch.output())
    assert len(errors) == 1, launch.output()
    assert "looked in" in errors[0] and str(models / "default") in errors[0], errors[0]
    assert "process started" not in launch.output()            # nothing was started


def test_a_pipeline_node_that_dies_ends_the_launch(workspace):
    params = workspace.tmp / "bad_decoder.yaml"
    shipped = workspace.ws / "install" / "mcucoder_ros" / "share" / "mcucoder_ros" / "config" / "pipeline.yaml"
    params.write_text(shipped.read_text() + "\n/**/decoder_node:\n  ros__parameters:\n    decoder: missing_arch\n")
    launch = workspace.start("launch_node_dies", "ros2", "launch", "mcucoder_ros", "pipeline.launch.py",
                             "source:=video", f"input:={CLIP}", f"params:={params}")
    rc = launch.wait(timeout=30)
    out = launch.output()
    assert rc != 0, out
    assert "decoder_node exited with status 2" in out, out
    assert "decoder_missing_arch.onnx" in out                  # the node's own one-line reason
    assert "Traceback" not in out and "terminate called" not in out, out
    assert "process has finished cleanly" in out                # the others were stopped, not left running


def test_launch_three_cameras_from_the_cameras_file(ros, workspace):
    """cameras:=cameras.yaml (the bundled list, read by the runner's parser): one source
    node per camera under /mcucoder/<name>, one controller, one link emulator and one
    batched decoder; every camera's decoded frames on its own topic with its frame id."""
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image
    names = ("front", "down", "rear")
    got = {n: [] for n in names}
    for n in names:
        ros.node.create_subscription(Image, f"/mcucoder/{n}/image_decoded", got[n].append,
                                     QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
    launch = workspace.start("launch_cameras", "ros2", "launch", "mcucoder_ros", "pipeline.launch.py",
                             "cameras:=cameras.yaml", "trace:=step")
    try:
        assert ros.spin_until(lambda: all(len(got[n]) >= 10 for n in names) or launch.proc.poll() is not None,
                              timeout=90), f"{ {n: len(g) for n, g in got.items()} }:\n{launch.output()[-3000:]}"
        assert all(g.header.frame_id == n for n in names for g in got[n])
        expected = {f"/mcucoder/{n}/encoder_node" for n in names} | {
            "/mcucoder/bitrate_controller_node", "/mcucoder/link_emulator_node", "/mcucoder/decoder_node"}
        for _ in range(4):
            nodes = workspace.ros2("node", "list")
            if expected <= set(nodes.stdout.split()):
                break
        assert expected <= set(nodes.stdout.split()), nodes.stdout + nodes.stderr
    finally:
        rc = launch.interrupt()
    assert rc == 0 and not launch.error_lines(), launch.output()[-3000:]
