#!/usr/bin/env python3
"""`make -C firmware report`: run every firmware target under QEMU (-icount: one guest
instruction per virtual ns, so counts repeat exactly) and write build/report.json.

Per target: ram_bytes (static .data + .bss from the link + the measured stack peak),
flash_bytes, instructions_per_frame and per stage (conv1, conv2, conv3, quantise +
code), and `jpeg`: our baseline JPEG encoder (core/mcu_jpeg.c) built for the same
target and fed by the same row-streaming camera, at the JPEG qualities whose MS-SSIM
matches MCUCoder at k = 6 and k = 12 on the same frames (instructions, bytes and the
MS-SSIM of the firmware's own JPEG files, decoded by OpenCV).  `energy` turns both into
energy per frame with the radio model of docs/firmware.md.  `video_mode`: the cost of
inter-frame coding (a self-acknowledging build, i.e. a loss-free link) against intra on
20 consecutive frames of the fixed-camera clip.

Frames: the two photographs of test/vectors and four frames of data/clips/traffic.mp4,
224x224.  Needs the project's .venv (numpy, OpenCV, onnxruntime) for the quality match."""
import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

TARGETS = {"m7": ("mps2-an500", "Cortex-M7 (STM32F7 class), DSP kernels"),
           "m33": ("mps2-an505", "Cortex-M33 (nRF5340 class), DSP kernels"),
           "stm32f405": ("netduinoplus2", "STM32F405, Cortex-M4F, DSP kernels"),
           "m3": ("mps2-an385", "Cortex-M3, no DSP extension: portable kernels"),
           "m55": ("mps3-an547", "Cortex-M55 (Helium class), DSP kernels (no MVE kernels yet)")}
PAPER = {"m7": {"ram_kb": 360, "flash_kb": 107, "ms_at_216MHz": 237},
         "m33": {"ram_kb": 344, "flash_kb": 100, "ms_at_64MHz": 1969}}
RAM_BUDGET, FLASH_BUDGET = 48 * 1024, 64 * 1024
STAGES = ("conv1", "conv2", "conv3", "code")
CLIP_FRAMES = (0, 20, 40, 60)
VIDEO_FRAMES = 20          # consecutive frames of the fixed-camera clip, for video mode
VIDEO_TARGETS = ("m7", "m33", "stm32f405", "m55")    # the M3's video mode is checked in the QEMU tests, not timed
KS = (6, 12)

# Energy model (docs/firmware.md, "Energy per frame"): CPU energy per instruction, taking
# one cycle per instruction, and radio energy per bit at the PHY rate (no protocol
# overhead, so the radio side is a lower bound).
CPU_NJ_PER_INSTRUCTION = 0.1
RADIOS_NJ_PER_BIT = {"ble_1m": 21.3, "ieee802154": 209.0, "wifi_n": 8.7}


def qemu(machine, elf, cwd, timeout=900):
    cmd = ["qemu-system-arm", "-M", machine, "-display", "none", "-monitor", "none", "-serial", "file:uart.bin",
           "-semihosting-config", "enable=on,target=native", "-icount", "shift=0,sleep=off,align=off",
           "-kernel", str(Path(elf).resolve())]
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise SystemExit(f"{elf}: firmware failed (exit {r.returncode}): {r.stdout}{r.stderr}")
    return {k: int(v) for k, v in re.findall(r"MCU_REPORT (\w+)=(\d+)", r.stdout + r.stderr)}


def sizes(elf):
    out = subprocess.run(["arm-none-eabi-size", "-A", str(elf)], capture_output=True, text=True, check=True).stdout
    sec = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\.\S+)\s+(\d+)", out, re.M)}
    static = sec.get(".data", 0) + sec.get(".bss", 0)
    return static, sec.get(".text", 0) + sec.get(".ARM.exidx", 0) + sec.get(".data", 0)


def frames(vectors):
    from mcucoder_ros.codec.images import resize_224
    from mcucoder_ros.evaluation import collect_frames
    out = [np.fromfile(Path(vectors) / f"{n}.rgb", np.uint8).reshape(224, 224, 3) for n in ("astronaut", "road")]
    video = collect_frames([str(ROOT / "data/clips/traffic.mp4")], max(CLIP_FRAMES) + 1)
    return out + [resize_224(video[i][1]) for i in CLIP_FRAMES]


def quality_match(rgb):
    """MCUCoder at k = 6 and 12 (default model and decoder; the host encoder is bit-exact
    with the firmware) and the lowest JPEG quality whose mean MS-SSIM is at least as high."""
    from mcucoder_ros.codec import bitstream
    from mcucoder_ros.codec.jpeg import jpeg_roundtrip
    from mcucoder_ros.codec.metrics import ms_ssim
    from mcucoder_ros.codec.model import DecoderModel, EncoderModel
    enc, dec = EncoderModel.load(), DecoderModel.load()
    out = {}
    jpeg = {q: [jpeg_roundtrip(f, q) for f in rgb] for q in range(1, 101)}
    jpeg_ms = {q: float(np.mean([ms_ssim(f, d) for f, (_, d) in zip(rgb, v)])) for q, v in jpeg.items()}
    for k in KS:
        coded = [enc.encode(f, k) for f in rgb]
        ms = float(np.mean([ms_ssim(f, dec.decode(c)) for f, c in zip(rgb, coded)]))
        q = next((q for q in range(1, 101) if jpeg_ms[q] >= ms), 100)
        out[f"k{k}"] = {"mcucoder_ms_ssim": round(ms, 4),
                        "mcucoder_bytes_per_frame": float(np.mean([len(bitstream.pack(c)) for c in coded])),
                        "jpeg_quality": q, "opencv_jpeg_ms_ssim": round(jpeg_ms[q], 4),
                        "opencv_jpeg_bytes_per_frame": float(np.mean([len(b) for b, _ in jpeg[q]]))}
    return out


def video_cost(name, build, clip_file, n):
    """Video mode against intra on the same consecutive frames: the intra firmware and the
    self-acknowledging build (a loss-free link), instructions and bytes per frame."""
    from mcucoder_ros.codec import bitstream
    from mcucoder_ros.link import serial_protocol as sp
    from mcucoder_ros.link.frames import FrameAssembler
    machine = TARGETS[name][0]
    out = {}
    for mode, elf in (("intra", "firmware.elf"), ("video", "firmware_video.elf")):
        with tempfile.TemporaryDirectory() as tmp:
            shutil.copy(clip_file, Path(tmp) / "camera.rgb")
            rep = qemu(machine, Path(build) / name / elf, tmp)
            parser, asm = sp.StreamParser(), FrameAssembler()
            frames = []
            for pkt in parser.feed((Path(tmp) / "uart.bin").read_bytes()):
                frames += asm.on_packet(pkt)
        if len(frames) != n:
            raise SystemExit(f"{name} {mode}: {len(frames)} of {n} frames came out")
        out[mode] = {"instructions_per_frame": rep["instructions_per_frame"],
                     "code_instructions": rep["instructions_code"],
                     "bytes_per_frame": sum(len(bitstream.pack(f.frame)) for f in frames) / n,
                     "inter_chunks": sum(1 for f in frames for d in f.frame.reference_deltas if d)}
    out["instructions_over_intra"] = out["video"]["instructions_per_frame"] / out["intra"]["instructions_per_frame"] - 1
    out["bytes_saving"] = 1 - out["video"]["bytes_per_frame"] / out["intra"]["bytes_per_frame"]
    return out


def run_target(name, build, camera, match, rgb):
    import cv2

    from mcucoder_ros.codec.metrics import ms_ssim
    machine, desc = TARGETS[name]
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(camera, Path(tmp) / "camera.rgb")
        rep = qemu(machine, Path(build) / name / "firmware.elf", tmp)
        (Path(tmp) / "jpeg.cfg").write_bytes(bytes(m["jpeg_quality"] for m in match.values()))
        jrep = qemu(machine, Path(build) / name / "jpeg.elf", tmp)
        jpeg = {}
        for k, m in match.items():
            q = m["jpeg_quality"]
            files = [Path(tmp) / f"q{q:03d}_f{i:03d}.jpg" for i in range(len(rgb))]
            decoded = [cv2.imdecode(np.fromfile(f, np.uint8), cv2.IMREAD_COLOR) for f in files]
            if any(d is None for d in decoded):
                raise SystemExit(f"{name}: OpenCV cannot decode the firmware's JPEG at quality {q}")
            jpeg[k] = {"quality": q, "instructions_per_frame": jrep[f"jpeg_q{q:03d}_instructions_per_frame"],
                       "bytes_per_frame": jrep[f"jpeg_q{q:03d}_bytes"] / len(rgb),
                       "ms_ssim": round(float(np.mean([ms_ssim(f, d[..., ::-1]) for f, d in zip(rgb, decoded)])), 4)}
    static, flash = sizes(Path(build) / name / "firmware.elf")
    jstatic, jflash = sizes(Path(build) / name / "jpeg.elf")
    return {"machine": machine, "cpu": desc, "ram_bytes": static + rep["stack_peak_bytes"], "static_ram_bytes": static,
            "stack_peak_bytes": rep["stack_peak_bytes"], "flash_bytes": flash,
            "instructions_per_frame": rep["instructions_per_frame"],
            "stages": {s: rep[f"instructions_{s}"] for s in STAGES}, "frames": rep["frames"],
            "ram_limit_bytes": RAM_BUDGET, "flash_limit_bytes": FLASH_BUDGET, "paper_table2": PAPER.get(name),
            "jpeg": dict(jpeg, static_ram_bytes=jstatic, flash_bytes=jflash)}


def energy(t, match):
    """Energy per frame in microjoules, MCUCoder against JPEG at equal MS-SSIM, and the
    radio energy per bit above which MCUCoder costs less in all."""
    out = {}
    for k, m in match.items():
        d_instr = t["instructions_per_frame"] - t["jpeg"][k]["instructions_per_frame"]
        d_bits = 8 * (t["jpeg"][k]["bytes_per_frame"] - m["mcucoder_bytes_per_frame"])
        row = {"break_even_nj_per_bit": round(d_instr * CPU_NJ_PER_INSTRUCTION / d_bits, 2) if d_bits > 0 else None}
        for radio, nj in RADIOS_NJ_PER_BIT.items():
            cpu_m = t["instructions_per_frame"] * CPU_NJ_PER_INSTRUCTION / 1e3
            cpu_j = t["jpeg"][k]["instructions_per_frame"] * CPU_NJ_PER_INSTRUCTION / 1e3
            row[radio] = {"mcucoder_uj": round(cpu_m + 8 * m["mcucoder_bytes_per_frame"] * nj / 1e3, 1),
                          "jpeg_uj": round(cpu_j + 8 * t["jpeg"][k]["bytes_per_frame"] * nj / 1e3, 1)}
        out[k] = row
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--vectors", default="../test/vectors")
    a = ap.parse_args()
    rgb = frames(a.vectors)
    print(f"quality match on {len(rgb)} frames (MCUCoder at k = {KS} against JPEG) ...")
    match = quality_match(rgb)
    from mcucoder_ros.codec.images import resize_224
    from mcucoder_ros.evaluation import collect_frames
    clip = [resize_224(f) for _, f in collect_frames([str(ROOT / "data/clips/traffic.mp4")], VIDEO_FRAMES)]
    with tempfile.NamedTemporaryFile(suffix=".rgb") as f, tempfile.NamedTemporaryFile(suffix=".rgb") as v:
        f.write(np.stack(rgb).tobytes())
        f.flush()
        v.write(np.stack(clip).tobytes())
        v.flush()
        report = {name: run_target(name, a.build, f.name, match, rgb) for name in TARGETS}
        for name in VIDEO_TARGETS:
            report[name]["video_mode"] = video_cost(name, a.build, v.name, len(clip))
    for t in report.values():
        t["energy"] = energy(t, match)
    report = {"frames": "test/vectors astronaut + road, data/clips/traffic.mp4 frames "
                        + ", ".join(map(str, CLIP_FRAMES)) + " (224x224)", "quality_match": match,
              "energy_model": {"cpu_nj_per_instruction": CPU_NJ_PER_INSTRUCTION, "radio_nj_per_bit": RADIOS_NJ_PER_BIT,
                               "see": "docs/firmware.md"}, **report}
    Path(a.build, "report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"{'target':10s} {'RAM (static+stack)':>20s} {'flash':>10s} {'instructions/frame':>20s}  "
          + "  ".join(f"{s:>6s}" for s in STAGES) + "  (M)   JPEG k6/k12 (M)")
    for name in TARGETS:
        r = report[name]
        print(f"{name:10s} {r['ram_bytes']:>11,d} B ({r['ram_bytes'] / 1024:.1f} KB) {r['flash_bytes']:>8,d} B "
              f"{r['instructions_per_frame']:>20,d}  " + "  ".join(f"{r['stages'][s] / 1e6:6.2f}" for s in STAGES)
              + "   " + " / ".join(f"{r['jpeg'][f'k{k}']['instructions_per_frame'] / 1e6:.2f}" for k in KS))
    for name in VIDEO_TARGETS:
        vm = report[name]["video_mode"]
        print(f"{name:10s} video mode on {VIDEO_FRAMES} frames of traffic.mp4: "
              f"{vm['video']['instructions_per_frame'] / 1e6:.2f} M instructions per frame "
              f"({100 * vm['instructions_over_intra']:+.1f} % over intra), "
              f"{vm['video']['bytes_per_frame']:.0f} B per frame ({-100 * vm['bytes_saving']:+.0f} %)")
    for k, m in match.items():
        j = report["m7"]["jpeg"][k]
        print(f"{k}: MCUCoder {m['mcucoder_bytes_per_frame']:.0f} B/frame at MS-SSIM {m['mcucoder_ms_ssim']}; "
              f"JPEG q{j['quality']} {j['bytes_per_frame']:.0f} B/frame at MS-SSIM {j['ms_ssim']} (firmware's files)")
    print(f"wrote {Path(a.build, 'report.json')}")
    ok = all(report[n]["ram_bytes"] <= RAM_BUDGET and report[n]["flash_bytes"] <= FLASH_BUDGET for n in TARGETS)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
