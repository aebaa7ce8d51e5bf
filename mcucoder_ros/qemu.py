"""Run the real firmware image under QEMU as the pipeline's camera: the video's frames,
at their own size (or resized with the aspect kept, as the video source does), become
the camera file read by semihosting (camera.rgb, its size in camera.cfg), UART0 becomes
a loopback TCP socket that mcu_bridge_node opens as `socket://127.0.0.1:PORT`."""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from . import resources
from .codec.geometry import check_size
from .codec.images import fit_size, resize_to
from .sources import FrameSource

# firmware target -> QEMU machine (firmware/Makefile builds each target)
MACHINES = {"m7": "mps2-an500", "m33": "mps2-an505", "m3": "mps2-an385", "stm32f405": "netduinoplus2",
            "m55": "mps3-an547"}


def firmware_elf(target: str) -> Path:
    """The firmware image of a target: from $MCUCODER_FIRMWARE_DIR (a firmware folder)
    when set, else the checkout's firmware/ (built with `make -C firmware` if needed),
    else the images a colcon install or make setup's venv carries (share/mcucoder_ros/
    firmware/build/<target>/, built when arm-none-eabi-gcc was there)."""
    rel = Path("build") / target / "firmware.elf"
    env = os.environ.get("MCUCODER_FIRMWARE_DIR")
    sources = [Path(env)] if env else [resources.CHECKOUT / "firmware"] if resources.CHECKOUT else []
    for root in sources:
        if not (root / rel).exists() and (root / "Makefile").exists() and shutil.which("arm-none-eabi-gcc"):
            subprocess.run(["make", "-s", "-C", str(root), target], check=True, stdout=subprocess.DEVNULL)
        if (root / rel).exists():
            return root / rel
    if env:
        raise resources.ResourceNotFound(f"firmware image for {target} not found: $MCUCODER_FIRMWARE_DIR={env} "
                                         f"has no {rel} (build it: make -C firmware)")
    try:
        return resources.find(f"firmware/{rel}", f"firmware image for {target}")
    except resources.ResourceNotFound as e:
        raise resources.ResourceNotFound(f"{e} (build it: make -C firmware, with gcc-arm-none-eabi and "
                                         "libnewlib-arm-none-eabi)") from None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class QemuCamera:
    def __init__(self, target: str, video: str, max_frames: int | None = None, firmware: str | None = None,
                 link_key: bytes | None = None, stream_frames: int | None = None, rng: bool = True,
                 device_id: bytes | None = None, storage: str | None = None, width: int = 0,
                 height: int = 0, scale: float = 0.0):
        """The camera streams the video's frames at their own size; `width` / `height`
        (one of them: the aspect is kept) or `scale` resize them first, as image_proc's
        resize does.  The firmware refuses a size above its compiled maximum (it says so
        in a DEVICE_ERROR packet and on its console).  `rng`: emulate the part's random
        generator (a fresh seed per launch, below);
        False: a part without one, whose nonces rest on its boot counter.  `device_id`:
        the part's serial number (16 bytes; random by default).  `storage`: a folder that
        stands for the device's flash across launches (link.key, boot.count, device.id);
        by default every launch gets a fresh one."""
        if target not in MACHINES:
            raise ValueError(f"unknown QEMU target '{target}' ({', '.join(MACHINES)})")
        if not shutil.which("qemu-system-arm"):
            raise FileNotFoundError("qemu-system-arm not found (apt-get install qemu-system-arm)")
        self.target, self.video, self.max_frames = target, video, max_frames
        self.resize = (int(width), int(height), float(scale))
        self.size = None                # (width, height) of the camera's frames, once start() wrote them
        self.firmware = Path(firmware) if firmware else firmware_elf(target)
        self.rng = rng
        self.dir = storage or tempfile.mkdtemp(prefix="mcucoder-qemu-")
        self.own_dir = storage is None
        id_file = Path(self.dir) / "device.id"
        if device_id is not None or not id_file.exists():
            id_file.write_bytes(device_id if device_id is not None else os.urandom(16))
        self.device_id = id_file.read_bytes()
        if link_key is not None and not (Path(self.dir) / "link.key").exists():
            # the emulated device's flash holds its key (the firmware reads link.key by
            # semihosting), as a device provisioned at the factory would
            fd = os.open(Path(self.dir) / "link.key", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(link_key)
        if stream_frames is not None:   # the firmware streams this many frames, the clip looped
            (Path(self.dir) / "frames.cfg").write_bytes(int(stream_frames).to_bytes(4, "little"))
        self.proc = None
        self.log = Path(self.dir) / "semihosting.log"

    def start(self, port: int | None = None) -> str:
        """Write the camera file, start QEMU listening on 127.0.0.1:port (a free one by
        default) and return the URL for mcu_bridge_node."""
        # the same reading of a video or image folder as encoder_node's sources
        source = FrameSource("images" if Path(self.video).is_dir() else "video", self.video)
        self.n_frames = 0
        with open(Path(self.dir) / "camera.rgb", "wb") as f:
            while self.max_frames is None or self.n_frames < self.max_frames:
                rgb = source.next()
                if rgb is None:
                    break
                if self.size is None:
                    self.size = fit_size(rgb.shape[1], rgb.shape[0], *self.resize)
                    check_size(*self.size)
                f.write(resize_to(rgb, self.size).tobytes())
                self.n_frames += 1
        source.close()
        if not self.n_frames:
            raise ValueError(f"no frames in {self.video}")
        # the emulated camera's configuration: its picture size (width, height u16 LE)
        (Path(self.dir) / "camera.cfg").write_bytes(self.size[0].to_bytes(2, "little")
                                                    + self.size[1].to_bytes(2, "little"))
        # QEMU models none of the targets' random generators: the host stands in for it with
        # 32 fresh random bytes per launch, which the firmware reads once at boot (semihosting)
        seed = Path(self.dir) / "rng.seed"
        if self.rng:
            seed.write_bytes(os.urandom(32))
        elif seed.exists():
            seed.unlink()
        port = port or free_port()
        cmd = ["qemu-system-arm", "-M", MACHINES[self.target], "-display", "none", "-monitor", "none",
               "-chardev", f"socket,id=u0,host=127.0.0.1,port={port},server=on,wait=on", "-serial", "chardev:u0",
               "-semihosting-config", "enable=on,target=native", "-kernel", str(self.firmware)]
        # no -icount here: with it, QEMU services the UART's input only now and then, so
        # host commands (channel budget) would arrive late; `make -C firmware report`
        # uses -icount for its deterministic instruction counts
        # QEMU waits for the first client before starting the CPU, so nothing is lost; that
        # client must be the bridge (it retries until QEMU listens): no probing here.
        self.proc = subprocess.Popen(cmd, cwd=self.dir, stdout=open(self.log, "w"), stderr=subprocess.STDOUT)
        time.sleep(0.05)
        if self.proc.poll() is not None:
            raise RuntimeError(f"QEMU exited: {self.log.read_text()}")
        return f"socket://127.0.0.1:{port}"

    def finished(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def report(self) -> dict:
        text = self.log.read_text() if self.log.exists() else ""
        return {k: int(v) for k, v in re.findall(r"MCU_REPORT (\w+)=(\d+)", text)}

    def report_text(self) -> str:
        r = self.report()
        return f"firmware ({self.target}): " + ", ".join(f"{k} {v}" for k, v in r.items()) if r else ""

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if self.own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)



def main(argv=None) -> int:
    """`qemu_camera` (lib/mcucoder_ros/, started by pipeline.launch.py for source:=qemu-*):
    the firmware image under QEMU as a camera fed with a video's frames, its UART on a
    loopback TCP port for mcu_bridge_node.  Ends when the firmware has sent every frame
    (status 0) or on SIGINT / SIGTERM."""
    import argparse
    import signal
    import sys

    ap = argparse.ArgumentParser(prog="qemu_camera", description=main.__doc__.split("\n\n")[0])
    ap.add_argument("--target", required=True, choices=sorted(MACHINES))
    ap.add_argument("--input", required=True, help="video file or image folder: the camera's frames")
    ap.add_argument("--port", type=int, required=True, help="loopback TCP port of the UART")
    ap.add_argument("--firmware", help="firmware image (default: the installed or checkout image of the target)")
    ap.add_argument("--max-frames", type=int)
    ap.add_argument("--width", type=int, default=0, help="resize the frames to this width (0: their own; with "
                    "only one of --width / --height the aspect is kept)")
    ap.add_argument("--height", type=int, default=0)
    ap.add_argument("--scale", type=float, default=0.0, help="resize both sides by this factor (0: not set)")
    a = ap.parse_args(argv)
    stopping = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.append(True))
    try:
        cam = QemuCamera(a.target, a.input, a.max_frames, a.firmware, width=a.width, height=a.height, scale=a.scale)
        cam.start(a.port)
    except (OSError, ValueError, RuntimeError) as e:
        print(f"qemu_camera: cannot start: {e}", file=sys.stderr, flush=True)
        return 2
    print(f"qemu_camera: {a.target} firmware streaming {cam.n_frames} frames of {a.input} at "
          f"{cam.size[0]}x{cam.size[1]} on "
          f"socket://127.0.0.1:{a.port}", flush=True)
    while not stopping and cam.proc.poll() is None:
        time.sleep(0.1)
    for sig in (signal.SIGINT, signal.SIGTERM):    # a second Ctrl-C (ros2 launch's own) while exiting
        signal.signal(sig, signal.SIG_IGN)
    rc = 0 if stopping else cam.proc.returncode
    report = cam.report_text()
    cam.stop()
    if report:
        print(report, flush=True)
    return rc
