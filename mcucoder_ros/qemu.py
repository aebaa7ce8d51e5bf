"""Run the real firmware image under QEMU as the pipeline's camera: the video's frames
(resized to 224x224) become the camera file read by semihosting, UART0 becomes a
loopback TCP socket that mcu_bridge_node opens as `socket://127.0.0.1:PORT`."""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from .codec.images import resize_224
from .evaluation import collect_frames

# firmware target -> QEMU machine (firmware/Makefile builds each target)
MACHINES = {"m7": "mps2-an500", "m33": "mps2-an505", "m3": "mps2-an385", "stm32f405": "netduinoplus2"}


def firmware_elf(target: str) -> Path:
    """The built firmware image ($MCUCODER_FIRMWARE_DIR, else ./firmware of the checkout);
    builds it with `make -C firmware` if needed."""
    env = os.environ.get("MCUCODER_FIRMWARE_DIR")
    roots = [Path(env)] if env else [Path(__file__).resolve().parents[1] / "firmware", Path.cwd() / "firmware"]
    for root in roots:
        elf = root / "build" / target / "firmware.elf"
        if not elf.exists() and (root / "Makefile").exists() and shutil.which("arm-none-eabi-gcc"):
            subprocess.run(["make", "-s", "-C", str(root), target], check=True, stdout=subprocess.DEVNULL)
        if elf.exists():
            return elf
    raise FileNotFoundError(f"firmware image for {target} not found (build it: make -C firmware; needs "
                            "gcc-arm-none-eabi and libnewlib-arm-none-eabi)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class QemuCamera:
    def __init__(self, target: str, video: str, max_frames: int | None = None):
        if target not in MACHINES:
            raise ValueError(f"unknown QEMU target '{target}' ({', '.join(MACHINES)})")
        if not shutil.which("qemu-system-arm"):
            raise FileNotFoundError("qemu-system-arm not found (apt-get install qemu-system-arm)")
        self.target, self.video, self.max_frames = target, video, max_frames
        self.dir = tempfile.mkdtemp(prefix="mcucoder-qemu-")
        self.proc = None
        self.log = Path(self.dir) / "semihosting.log"

    def start(self) -> str:
        frames = collect_frames([self.video], self.max_frames)
        with open(Path(self.dir) / "camera.rgb", "wb") as f:
            for _, rgb in frames:
                f.write(resize_224(rgb).tobytes())
        self.n_frames = len(frames)
        port = _free_port()
        cmd = ["qemu-system-arm", "-M", MACHINES[self.target], "-display", "none", "-monitor", "none",
               "-chardev", f"socket,id=u0,host=127.0.0.1,port={port},server=on,wait=on", "-serial", "chardev:u0",
               "-semihosting-config", "enable=on,target=native", "-kernel", str(firmware_elf(self.target))]
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
        shutil.rmtree(self.dir, ignore_errors=True)

