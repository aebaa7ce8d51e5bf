#!/usr/bin/env python3
"""Run every firmware target under QEMU (-icount: deterministic instruction counts) on
the golden-vector frames and write build/report.json: per target ram_bytes (static
.data+.bss from the link + measured stack peak), flash_bytes, instructions_per_frame
and per stage (conv1, conv2, conv3, quantise + code)."""
import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

TARGETS = {"m7": ("mps2-an500", "Cortex-M7 (STM32F7 class), DSP kernels"),
           "m33": ("mps2-an505", "Cortex-M33 (nRF5340 class), DSP kernels"),
           "stm32f405": ("netduinoplus2", "STM32F405, Cortex-M4F, DSP kernels"),
           "m3": ("mps2-an385", "Cortex-M3, no DSP extension: portable kernels")}
RAM_BUDGET, FLASH_BUDGET = 48 * 1024, 64 * 1024
STAGES = ("conv1", "conv2", "conv3", "code")
PAPER = {"m7": {"ram_kb": 360, "flash_kb": 107, "ms_at_216MHz": 237}, "m33": {"ram_kb": 344, "flash_kb": 100,
                                                                            "ms_at_64MHz": 1969}}


def qemu_cmd(machine, elf, serial):
    return ["qemu-system-arm", "-M", machine, "-display", "none", "-monitor", "none", "-serial", serial,
            "-semihosting-config", "enable=on,target=native", "-icount", "shift=0,sleep=off,align=off",
            "-kernel", str(elf)]


def section_sizes(elf):
    out = subprocess.run(["arm-none-eabi-size", "-A", str(elf)], capture_output=True, text=True, check=True).stdout
    sizes = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\.\S+)\s+(\d+)", out, re.M)}
    return sizes


def run_target(name, build, frames_file):
    machine, desc = TARGETS[name]
    elf = Path(build) / name / "firmware.elf"
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(frames_file, Path(tmp) / "camera.rgb")
        r = subprocess.run(qemu_cmd(machine, elf.resolve(), "file:uart.bin"), cwd=tmp, capture_output=True,
                           text=True, timeout=600)
    if r.returncode != 0:
        raise SystemExit(f"{name}: firmware failed (exit {r.returncode}): {r.stdout}{r.stderr}")
    rep = {k: int(v) for k, v in re.findall(r"MCU_REPORT (\w+)=(\d+)", r.stdout + r.stderr)}
    sec = section_sizes(elf)
    static = sec.get(".data", 0) + sec.get(".bss", 0)
    flash = sec.get(".text", 0) + sec.get(".ARM.exidx", 0) + sec.get(".data", 0)
    return {"machine": machine, "cpu": desc, "ram_bytes": static + rep["stack_peak_bytes"], "static_ram_bytes": static,
            "stack_peak_bytes": rep["stack_peak_bytes"], "flash_bytes": flash,
            "instructions_per_frame": rep["instructions_per_frame"],
            "stages": {s: rep[f"instructions_{s}"] for s in STAGES}, "frames": rep["frames"],
            "ram_limit_bytes": RAM_BUDGET, "flash_limit_bytes": FLASH_BUDGET, "paper_table2": PAPER.get(name)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--vectors", default="../test/vectors")
    a = ap.parse_args()
    with tempfile.NamedTemporaryFile(suffix=".rgb") as f:
        for n in ("astronaut", "road", "extremes"):
            f.write((Path(a.vectors) / f"{n}.rgb").read_bytes())
        f.flush()
        report = {name: run_target(name, a.build, f.name) for name in TARGETS}
    Path(a.build, "report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"{'target':10s} {'RAM (static+stack)':>20s} {'flash':>10s} {'instructions/frame':>20s}  "
          + "  ".join(f"{s:>6s}" for s in STAGES) + "  (M)")
    for name, r in report.items():
        print(f"{name:10s} {r['ram_bytes']:>11,d} B ({r['ram_bytes'] / 1024:.1f} KB) {r['flash_bytes']:>8,d} B "
              f"{r['instructions_per_frame']:>20,d}  " + "  ".join(f"{r['stages'][s] / 1e6:6.2f}" for s in STAGES))
    print(f"wrote {Path(a.build, 'report.json')}")
    ok = all(r["ram_bytes"] <= r["ram_limit_bytes"] and r["flash_bytes"] <= r["flash_limit_bytes"]
             for r in report.values())
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
