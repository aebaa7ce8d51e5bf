#!/usr/bin/env python3
"""`make -C firmware report`: run every firmware target under QEMU (-icount: one guest
instruction per virtual ns, so counts repeat exactly) and write build/report.json.

Per target: ram_bytes (static .data + .bss from the link + the measured stack peak),
flash_bytes, instructions_per_frame and per stage (conv1, conv2, conv3, quantise +
code), and `jpeg`: our baseline JPEG encoder (core/mcu_jpeg.c) built for the same
target and fed by the same row-streaming camera, at the JPEG qualities whose MS-SSIM
matches MCUCoder at k = 6 and k = 12 on the same frames (instructions, bytes and the
MS-SSIM of the firmware's own JPEG files, decoded by OpenCV, and a hash of the files, the
same on every target).  `video_mode`: inter-frame coding (a self-acknowledging build, i.e.
a loss-free link) against intra and against the firmware's JPEG at equal MS-SSIM, on 20
consecutive frames of a fixed camera (traffic.mp4) and of a moving one (pan.mp4).
`cycles` (M55): a cycle estimate per stage from a traced run and a stated beat model
(tools/cycles.py); the other targets count one cycle per instruction.  `energy` turns
it all into energy per frame (CPU + radio) with the model of docs/firmware.md.

Frames: the two photographs of test/vectors and four frames of data/clips/traffic.mp4,
224x224, on images built for a 224x224 camera (BUILD/224x224).  `sizes`: every target built
for a camera of 224x224, 320x240 and 640x480 (MCU_MAX_WIDTH x MCU_MAX_HEIGHT; BUILD/<size>)
and run on the clip's four frames at that size: instructions per frame and per pixel, RAM
(static + stack peak, video mode's references included), flash, and the firmware's JPEG
at the same size (at the quality that matches k = 6 at 224x224).  Needs the project's
.venv (numpy, OpenCV, onnxruntime) for the quality match."""
import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

TARGETS = {"m7": ("mps2-an500", "Cortex-M7 (STM32F7 class), DSP kernels"),
           "m33": ("mps2-an505", "Cortex-M33 (nRF5340 class), DSP kernels"),
           "stm32f405": ("netduinoplus2", "STM32F405, Cortex-M4F, DSP kernels"),
           "m3": ("mps2-an385", "Cortex-M3, no DSP extension: portable kernels"),
           "m55": ("mps3-an547", "Cortex-M55 (Helium class), Helium (MVE) kernels, Helium JPEG")}
PAPER = {"m7": {"ram_kb": 360, "flash_kb": 107, "ms_at_216MHz": 237},
         "m33": {"ram_kb": 344, "flash_kb": 100, "ms_at_64MHz": 1969}}
RAM_BUDGET, FLASH_BUDGET = 48 * 1024, 64 * 1024
STAGES = ("conv1", "conv2", "conv3", "code")
CLIP_FRAMES = (0, 20, 40, 60)
VIDEO_FRAMES = 20          # consecutive frames of each clip, for video mode
CLIPS = {"fixed": "data/clips/traffic.mp4", "moving": "data/clips/pan.mp4"}
VIDEO_TARGETS = ("m7", "m33", "stm32f405", "m55")    # the M3's video mode is checked in the QEMU tests, not timed
KS = (6, 12)
SIZES = ((224, 224), (320, 240), (640, 480))
# acceptance of issue 30 (RAM in bytes, static + stack peak, video references included)
SIZE_RAM_LIMITS = {(224, 224): 48 * 1024, (320, 240): 64 * 1024, (640, 480): 160 * 1024}

# Energy model (docs/firmware.md, "Energy per frame"): CPU energy per cycle (cycles from
# the M55's beat model, one per instruction elsewhere) and radio energy per bit at the PHY
# rate (no protocol overhead, so the radio side is a lower bound).
CPU_NJ_PER_CYCLE = 0.1
RADIOS_NJ_PER_BIT = {"ble_1m": 21.3, "ieee802154": 209.0, "wifi_n": 8.7,
                     "lora_sf7": 17_500.0, "nbiot": 12_700.0}
# stage -> function-name prefixes, for the M55's cycle estimate
STAGE_FUNCS = {"conv1": ["mcu_conv1"], "conv2": ["mcu_conv2"], "conv3": ["mcu_conv3"],
               "code": ["mcu_quantize", "code_channel", "mcu_code_channel", "mcu_video"]}
JPEG_FUNCS = ["mcu_jpeg", "put_bits", "emit", "make_codes", "base_quant"]


def qemu(machine, elf, cwd, timeout=900):
    r = subprocess.run(qemu_cmd(machine, elf), cwd=cwd, capture_output=True, text=True, timeout=timeout)
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
    out, jpeg = {}, {}

    def jpeg_at(q):        # (mean MS-SSIM, mean bytes) of OpenCV's JPEG at quality q
        if q not in jpeg:
            rt = [jpeg_roundtrip(f, q) for f in rgb]
            jpeg[q] = (float(np.mean([ms_ssim(f, d) for f, (_, d) in zip(rgb, rt)])),
                       float(np.mean([len(b) for b, _ in rt])))
        return jpeg[q]

    for k in KS:
        coded = [enc.encode(f, k) for f in rgb]
        ms = float(np.mean([ms_ssim(f, dec.decode(c)) for f, c in zip(rgb, coded)]))
        q = next((q for q in range(1, 101) if jpeg_at(q)[0] >= ms), 100)
        out[f"k{k}"] = {"mcucoder_ms_ssim": round(ms, 4),
                        "mcucoder_bytes_per_frame": float(np.mean([len(bitstream.pack(c)) for c in coded])),
                        "jpeg_quality": q, "opencv_jpeg_ms_ssim": round(jpeg_at(q)[0], 4),
                        "opencv_jpeg_bytes_per_frame": jpeg_at(q)[1]}
    return out


def qemu_cmd(machine, elf):
    return ["qemu-system-arm", "-M", machine, "-display", "none", "-monitor", "none", "-serial", "file:uart.bin",
            "-semihosting-config", "enable=on,target=native", "-icount", "shift=0,sleep=off,align=off",
            "-kernel", str(Path(elf).resolve())]


def run_jpeg(machine, elf, cwd, qualities, rgb):
    """The firmware's JPEG at each quality on the frames in cwd/camera.rgb: instructions and
    bytes per frame, MS-SSIM of its own files (decoded by OpenCV) and a hash of the files."""
    import cv2

    from mcucoder_ros.codec.metrics import ms_ssim
    (Path(cwd) / "jpeg.cfg").write_bytes(bytes(qualities))
    rep = qemu(machine, elf, cwd)
    out = {}
    for q in qualities:
        files = [Path(cwd) / f"q{q:03d}_f{i:03d}.jpg" for i in range(len(rgb))]
        data = [f.read_bytes() for f in files]
        decoded = [cv2.imdecode(np.frombuffer(d, np.uint8), cv2.IMREAD_COLOR) for d in data]
        if any(d is None for d in decoded):
            raise SystemExit(f"{elf}: OpenCV cannot decode the firmware's JPEG at quality {q}")
        out[q] = {"quality": q, "instructions_per_frame": rep[f"jpeg_q{q:03d}_instructions_per_frame"],
                  "bytes_per_frame": rep[f"jpeg_q{q:03d}_bytes"] / len(rgb),
                  "ms_ssim": round(float(np.mean([ms_ssim(f, d[..., ::-1]) for f, d in zip(rgb, decoded)])), 4),
                  "sha256": hashlib.sha256(b"".join(data)).hexdigest()}
    return out


def run_stream(machine, elf, cwd, n):
    """An encoder image on the frames in cwd/camera.rgb: its report and bytes per frame as
    the host receives them (packets parsed and assembled by the host's own code)."""
    from mcucoder_ros.codec import bitstream
    from mcucoder_ros.link.frames import FrameAssembler
    rep = qemu(machine, elf, cwd)
    asm, frames = FrameAssembler(), []
    for pkt in sp_packets((Path(cwd) / "uart.bin").read_bytes()):
        frames += asm.on_packet(pkt)
    if len(frames) != n:
        raise SystemExit(f"{elf}: {len(frames)} of {n} frames came out")
    return {"instructions_per_frame": rep["instructions_per_frame"],
            "stages": {st: rep[f"instructions_{st}"] for st in STAGES},
            "bytes_per_frame": sum(len(bitstream.pack(f.frame)) for f in frames) / n,
            "inter_chunks": sum(1 for f in frames for d in f.frame.reference_deltas if d)}


def video_cost(name, build, clip_file, rgb, match):
    """Video mode against intra and against JPEG at equal MS-SSIM on consecutive frames of
    one clip: intra (k = 12), the self-acknowledging builds (a loss-free link) at k = 12 and
    k = 6, and the firmware's JPEG at the qualities that match k = 6 and k = 12 there."""
    machine = TARGETS[name][0]
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(clip_file, Path(tmp) / "camera.rgb")
        for mode, elf in (("intra", "firmware.elf"), ("video", "firmware_video.elf"),
                          ("video_k6", "firmware_video_k6.elf")):
            out[mode] = run_stream(machine, Path(build) / name / elf, tmp, len(rgb))
        jpeg = run_jpeg(machine, Path(build) / name / "jpeg.elf", tmp,
                        sorted({m["jpeg_quality"] for m in match.values()}), rgb)
    out["instructions_over_intra"] = out["video"]["instructions_per_frame"] / out["intra"]["instructions_per_frame"] - 1
    out["bytes_saving"] = 1 - out["video"]["bytes_per_frame"] / out["intra"]["bytes_per_frame"]
    out["jpeg"] = {k: jpeg[m["jpeg_quality"]] for k, m in match.items()}
    out["quality_match"] = match
    return out


SEAL_TEST_KEY = bytes(range(32))


def run_sealed(machine, elf, cwd, plain_uart):
    """The firmware with a key, in a session with itself (host nonce of zeros): its
    report, and whether its sealed stream opens, with the host's code, to exactly the
    packets of the plain run."""
    from mcucoder_ros.link import sealed
    Path(cwd, "link.key").write_bytes(SEAL_TEST_KEY)
    rep = qemu(machine, elf, cwd)
    pkts = sp_packets(Path(cwd, "uart.bin").read_bytes())
    hello = pkts[0]
    up, _ = sealed.session_keys(SEAL_TEST_KEY, hello.payload[20:36], bytes(16))
    inner = [sealed.open_sealed(up, sealed.SEALED_UP, p.payload)[1] for p in pkts[1:]]
    # the chunks, byte for byte (headers carry capture times, which differ between runs)
    chunks = lambda ps: [(p.type, p.payload) for p in ps if p.type in (3, 6)]    # noqa: E731
    same = chunks(inner) == chunks(sp_packets(plain_uart)) != []
    return rep, same


def sp_packets(data):
    from mcucoder_ros.link import serial_protocol as sp
    return sp.StreamParser().feed(data)


def run_target(name, build, camera, match, rgb):
    machine, desc = TARGETS[name]
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(camera, Path(tmp) / "camera.rgb")
        rep = qemu(machine, Path(build) / name / "firmware.elf", tmp)
        plain_uart = Path(tmp, "uart.bin").read_bytes()
        srep, same = run_sealed(machine, Path(build) / name / "firmware_sealed.elf", tmp, plain_uart)
        Path(tmp, "link.key").unlink()
        rep6 = qemu(machine, Path(build) / name / "firmware_k6.elf", tmp)
        jpeg = run_jpeg(machine, Path(build) / name / "jpeg.elf", tmp,
                        sorted({m["jpeg_quality"] for m in match.values()}), rgb)
    static, flash = sizes(Path(build) / name / "firmware.elf")
    jstatic, jflash = sizes(Path(build) / name / "jpeg.elf")
    return {"machine": machine, "cpu": desc, "ram_bytes": static + rep["stack_peak_bytes"], "static_ram_bytes": static,
            "stack_peak_bytes": rep["stack_peak_bytes"], "flash_bytes": flash,
            "instructions_per_frame": rep["instructions_per_frame"],
            "stages": {s: rep[f"instructions_{s}"] for s in STAGES}, "frames": rep["frames"],
            "send_instructions_per_frame": rep["instructions_send"],
            "sealed": {"instructions_per_frame": srep["instructions_per_frame"],
                       "send_instructions_per_frame": srep["instructions_send"],
                       "overhead": (srep["instructions_per_frame"] + srep["instructions_send"])
                       / (rep["instructions_per_frame"] + rep["instructions_send"]) - 1,
                       "ram_bytes": static + srep["stack_peak_bytes"], "stack_peak_bytes": srep["stack_peak_bytes"],
                       "session": bool(srep["sealed"]), "opens_to_the_plain_stream": same},
            "k6": {"instructions_per_frame": rep6["instructions_per_frame"],
                   "stages": {s: rep6[f"instructions_{s}"] for s in STAGES}},
            "ram_limit_bytes": RAM_BUDGET, "flash_limit_bytes": FLASH_BUDGET, "paper_table2": PAPER.get(name),
            "jpeg": dict({k: jpeg[m["jpeg_quality"]] for k, m in match.items()},
                         static_ram_bytes=jstatic, flash_bytes=jflash)}


def m55_cycles(build, camera_frame, match):
    """Cycles per instruction per stage on the M55 (tools/cycles.py), from one traced frame
    of the encoder and of the JPEG at both qualities."""
    import cycles
    machine = TARGETS["m55"][0]
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "camera.rgb").write_bytes(camera_frame)
        elf = Path(build) / "m55" / "firmware.elf"
        _, per = cycles.trace(qemu_cmd(machine, elf), tmp, elf, [f for fs in STAGE_FUNCS.values() for f in fs])
        Path(tmp, "jpeg.cfg").write_bytes(bytes(sorted({m["jpeg_quality"] for m in match.values()})))
        jelf = Path(build) / "m55" / "jpeg.elf"
        _, jper = cycles.trace(qemu_cmd(machine, jelf), tmp, jelf, JPEG_FUNCS)
    return {"model": cycles.MODEL, "frame": "test/vectors/astronaut",
            "cycles_per_instruction": cycles.ratios(per, STAGE_FUNCS),
            "jpeg_cycles_per_instruction": cycles.ratios(jper, {"jpeg": JPEG_FUNCS})["jpeg"]}


def frame_cycles(instructions, stages, cpi, which="cycles"):
    """Cycles per frame: each stage's instructions at its cycles per instruction, the rest
    (camera, packets) at one; with no cycle model, one per instruction."""
    if not cpi:
        return instructions
    staged = sum(stages.values())
    return instructions - staged + sum(n * cpi["cycles_per_instruction"][st][which] for st, n in stages.items())


def jpeg_cycles(instructions, cpi, which="cycles"):
    return instructions * cpi["jpeg_cycles_per_instruction"][which] if cpi else instructions


def energy_rows(m_cycles, m_bytes, j_cycles, j_bytes):
    """Energy per frame in microjoules, MCUCoder against JPEG, per radio, and the radio
    energy per bit above which MCUCoder costs less in all."""
    d_bits = 8 * (j_bytes - m_bytes)
    d_nj = (m_cycles - j_cycles) * CPU_NJ_PER_CYCLE
    # None: MCUCoder sends more bits, so no radio makes it cheaper; 0: it wins on the CPU too
    row = {"break_even_nj_per_bit": None if d_bits <= 0 else round(max(d_nj, 0.0) / d_bits, 2)}
    for radio, nj in RADIOS_NJ_PER_BIT.items():
        row[radio] = {"mcucoder_uj": round((m_cycles * CPU_NJ_PER_CYCLE + 8 * m_bytes * nj) / 1e3, 1),
                      "jpeg_uj": round((j_cycles * CPU_NJ_PER_CYCLE + 8 * j_bytes * nj) / 1e3, 1)}
    return row


def build_size(build, size):
    """make the firmware and JPEG images of every target for a camera of this size (its
    own build folder); {target: error text} for those that do not link (the part's RAM)."""
    w, h = size
    folder = Path(build) / f"{w}x{h}"
    failed = {}
    for name in TARGETS:
        r = subprocess.run(["make", "-s", "-C", str(ROOT / "firmware"), f"BUILD={folder.resolve()}", f"MAX={w}x{h}",
                            str(folder.resolve() / name / "firmware.elf"), str(folder.resolve() / name / "jpeg.elf")],
                           capture_output=True, text=True)
        if r.returncode:
            err = [line for line in (r.stdout + r.stderr).splitlines() if "RAM" in line or "overflow" in line]
            failed[name] = (err[0] if err else (r.stdout + r.stderr)[-300:]).split("ld: ")[-1]
    return folder, failed


def run_size(name, folder, size, camera, n, quality):
    """One target built for a camera of this size, on n frames of it: instructions per frame
    and per pixel, RAM, flash, and the firmware's JPEG at the same size."""
    machine = TARGETS[name][0]
    w, h = size
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(camera, Path(tmp) / "camera.rgb")
        Path(tmp, "camera.cfg").write_bytes(w.to_bytes(2, "little") + h.to_bytes(2, "little"))
        rep = qemu(machine, folder / name / "firmware.elf", tmp)
        frames = []
        from mcucoder_ros.link.frames import FrameAssembler
        asm = FrameAssembler()
        for pkt in sp_packets(Path(tmp, "uart.bin").read_bytes()):
            frames += asm.on_packet(pkt)
        Path(tmp, "jpeg.cfg").write_bytes(bytes([quality]))
        jrep = qemu(machine, folder / name / "jpeg.elf", tmp)
        jpeg_files = [Path(tmp, f"q{quality:03d}_f{i:03d}.jpg").read_bytes() for i in range(n)]
    if len(frames) != n or any(f.frame.size != (w, h) for f in frames):
        raise SystemExit(f"{name} at {w}x{h}: {len(frames)} of {n} frames came out, or of another size")
    static, flash = sizes(folder / name / "firmware.elf")
    ram = static + rep["stack_peak_bytes"]
    pixels = w * h
    return {"fits": True, "ram_bytes": ram, "static_ram_bytes": static, "stack_peak_bytes": rep["stack_peak_bytes"],
            "ram_limit_bytes": SIZE_RAM_LIMITS.get(size), "flash_bytes": flash,
            "instructions_per_frame": rep["instructions_per_frame"],
            "instructions_per_pixel": round(rep["instructions_per_frame"] / pixels, 2),
            "stages": {s: rep[f"instructions_{s}"] for s in STAGES},
            "bitstream_version": frames[0].frame.version,
            "jpeg": {"quality": quality, "instructions_per_frame": jrep[f"jpeg_q{quality:03d}_instructions_per_frame"],
                     "instructions_per_pixel": round(jrep[f"jpeg_q{quality:03d}_instructions_per_frame"] / pixels, 2),
                     "bytes_per_frame": jrep[f"jpeg_q{quality:03d}_bytes"] / n,
                     "sha256": hashlib.sha256(b"".join(jpeg_files)).hexdigest()}}


def size_report(build, pool, quality):
    """`sizes` of report.json: every target at every size of SIZES."""
    from mcucoder_ros.codec.images import resize_to
    from mcucoder_ros.evaluation import iter_video
    video = [f for _, f in iter_video(ROOT / "data/clips/traffic.mp4", max(CLIP_FRAMES) + 1)]
    out, jobs = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for size in SIZES:
            folder, failed = build_size(build, size)
            cam = Path(tmp, f"{size[0]}x{size[1]}.rgb")
            cam.write_bytes(np.stack([resize_to(video[i], size) for i in CLIP_FRAMES]).tobytes())
            key = f"{size[0]}x{size[1]}"
            out[key] = {}
            for name in TARGETS:
                if name in failed:
                    out[key][name] = {"fits": False, "why": failed[name]}
                else:
                    jobs[key, name] = pool.submit(run_size, name, folder, size, cam, len(CLIP_FRAMES), quality)
        for (key, name), job in jobs.items():
            out[key][name] = job.result()
    base = out["224x224"]
    for per in out.values():
        for name, r in per.items():
            if r["fits"] and base.get(name, {}).get("fits"):
                r["instructions_per_pixel_over_224"] = round(
                    r["instructions_per_pixel"] / base[name]["instructions_per_pixel"] - 1, 4)
    return out


def energy(t, match):
    cpi = t.get("cycles")
    out = {"cycles_per_frame": {}}
    for k, m in match.items():
        mi = t["k6"] if k == "k6" else t
        mc = frame_cycles(mi["instructions_per_frame"], mi["stages"], cpi)
        jc = jpeg_cycles(t["jpeg"][k]["instructions_per_frame"], cpi)
        out["cycles_per_frame"][k] = {"mcucoder": round(mc), "jpeg": round(jc)}
        out[k] = energy_rows(mc, m["mcucoder_bytes_per_frame"], jc, t["jpeg"][k]["bytes_per_frame"])
    for clip, vm in t.get("video_mode", {}).items():
        for k in match:
            v = vm["video_k6"] if k == "k6" else vm["video"]
            mc = frame_cycles(v["instructions_per_frame"], v["stages"], cpi)
            jc = jpeg_cycles(vm["jpeg"][k]["instructions_per_frame"], cpi)
            out.setdefault(f"video_{clip}", {})[k] = energy_rows(mc, v["bytes_per_frame"], jc,
                                                                 vm["jpeg"][k]["bytes_per_frame"])
    return out


def main():
    from mcucoder_ros.codec.images import resize_224
    from mcucoder_ros.evaluation import collect_frames
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--vectors", default="../test/vectors")
    a = ap.parse_args()
    rgb = frames(a.vectors)
    print(f"quality match on {len(rgb)} frames (MCUCoder at k = {KS} against JPEG) ...", flush=True)
    match = quality_match(rgb)
    clips = {c: [resize_224(f) for _, f in collect_frames([str(ROOT / p)], VIDEO_FRAMES)] for c, p in CLIPS.items()}
    clip_match = {}
    for c, fr in clips.items():
        print(f"quality match on {len(fr)} frames of {CLIPS[c]} ...", flush=True)
        clip_match[c] = quality_match(fr)
    # QEMU is one thread per run: run the targets side by side, one per core
    pool = ThreadPoolExecutor(max(1, min(4, os.cpu_count() or 1)))
    print(f"sizes {', '.join(f'{w}x{h}' for w, h in SIZES)}: every target built for each camera size ...", flush=True)
    size_rep = size_report(a.build, pool, match["k6"]["jpeg_quality"])
    out_dir = Path(a.build)                         # report.json goes here, beside the per-size folders
    a.build = str(Path(a.build) / "224x224")       # the analysis below: images for a 224x224 camera
    with tempfile.TemporaryDirectory() as tmp:
        still = Path(tmp, "frames.rgb")
        still.write_bytes(np.stack(rgb).tobytes())
        print(f"{', '.join(TARGETS)}: encoder and JPEG under QEMU; m55: cycle estimate from a traced frame ...",
              flush=True)
        jobs = {name: pool.submit(run_target, name, a.build, still, match, rgb) for name in TARGETS}
        cycles_job = pool.submit(m55_cycles, a.build, rgb[0].tobytes(), match)
        video_jobs = {}
        for c, fr in clips.items():
            f = Path(tmp, f"{c}.rgb")
            f.write_bytes(np.stack(fr).tobytes())
            for name in VIDEO_TARGETS:
                video_jobs[name, c] = pool.submit(video_cost, name, a.build, f, fr, clip_match[c])
        report = {name: job.result() for name, job in jobs.items()}
        report["m55"]["cycles"] = cycles_job.result()
        print(f"video mode on {', '.join(CLIPS.values())} ...", flush=True)
        for (name, c), job in video_jobs.items():
            report[name].setdefault("video_mode", {})[c] = job.result()
        pool.shutdown()
    for t in report.values():
        t["energy"] = energy(t, match)
    report["sizes"] = size_rep
    report = {"frames": "test/vectors astronaut + road, data/clips/traffic.mp4 frames "
                        + ", ".join(map(str, CLIP_FRAMES)) + " (224x224)", "quality_match": match,
              "video_frames": {c: f"{CLIPS[c]}, frames 0-{VIDEO_FRAMES - 1} (224x224)" for c in CLIPS},
              "energy_model": {"cpu_nj_per_cycle": CPU_NJ_PER_CYCLE, "radio_nj_per_bit": RADIOS_NJ_PER_BIT,
                               "cycles": "M55: tools/cycles.py beat model; other targets: one cycle per instruction",
                               "see": "docs/firmware.md"}, **report}
    (out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    summary(report, match)
    print(f"wrote {out_dir / 'report.json'}")
    ok = all(report[n]["ram_bytes"] <= RAM_BUDGET and report[n]["flash_bytes"] <= FLASH_BUDGET
             and report[n]["sealed"]["ram_bytes"] <= RAM_BUDGET for n in TARGETS)
    ok = ok and all(r["ram_bytes"] <= RAM_BUDGET for r in report["sizes"]["224x224"].values())
    sys.exit(0 if ok else 1)


def size_summary(sizes):
    print("per camera size (images built for that size; the clip's frames 0, 20, 40, 60 at that size):")
    print(f"{'size':9s} {'target':10s} {'RAM':>18s} {'flash':>9s} {'instr/frame':>14s} {'instr/pixel':>12s} "
          f"{'vs 224':>7s} {'JPEG instr/pixel':>17s}")
    for key, per in sizes.items():
        for name, r in per.items():
            if not r["fits"]:
                print(f"{key:9s} {name:10s} does not fit: {r['why']}")
                continue
            print(f"{key:9s} {name:10s} {r['ram_bytes']:>9,d} B ({r['ram_bytes'] / 1024:5.1f} KB) "
                  f"{r['flash_bytes']:>9,d} {r['instructions_per_frame']:>14,d} {r['instructions_per_pixel']:>12.1f} "
                  f"{100 * r.get('instructions_per_pixel_over_224', 0):>+6.2f}% "
                  f"{r['jpeg']['instructions_per_pixel']:>17.1f}")


def summary(report, match):
    size_summary(report["sizes"])
    print(f"{'target':10s} {'RAM (static+stack)':>20s} {'flash':>10s} {'instructions/frame':>20s}  "
          + "  ".join(f"{s:>6s}" for s in STAGES) + "  (M)   JPEG k6/k12 (M)")
    for name in TARGETS:
        r = report[name]
        print(f"{name:10s} {r['ram_bytes']:>11,d} B ({r['ram_bytes'] / 1024:.1f} KB) {r['flash_bytes']:>8,d} B "
              f"{r['instructions_per_frame']:>20,d}  " + "  ".join(f"{r['stages'][s] / 1e6:6.2f}" for s in STAGES)
              + "   " + " / ".join(f"{r['jpeg'][f'k{k}']['instructions_per_frame'] / 1e6:.2f}" for k in KS))
    cy = report["m55"]["cycles"]
    cpi = cy["cycles_per_instruction"]
    lo, mid, hi = (frame_cycles(report["m55"]["instructions_per_frame"], report["m55"]["stages"], cy, w) / 1e6
                   for w in ("cycles_low", "cycles", "cycles_high"))
    print(f"m55 cycles ({cy['model']}): {mid:.2f} M per frame ({lo:.2f}-{hi:.2f}); per instruction "
          + ", ".join(f"{st} {cpi[st]['cycles']:.2f}" for st in STAGES if st in cpi)
          + f"; JPEG {cy['jpeg_cycles_per_instruction']['cycles']:.2f}")
    for name in VIDEO_TARGETS:
        for c, vm in report[name]["video_mode"].items():
            print(f"{name:10s} video mode, {c} camera ({CLIPS[c]}): "
                  f"{vm['video']['instructions_per_frame'] / 1e6:.2f} M instructions per frame "
                  f"({100 * vm['instructions_over_intra']:+.1f} % over intra), "
                  f"{vm['video']['bytes_per_frame']:.0f} B per frame ({-100 * vm['bytes_saving']:+.0f} %); "
                  f"k = 6: {vm['video_k6']['bytes_per_frame']:.0f} B; JPEG at equal MS-SSIM "
                  + " / ".join(f"q{vm['jpeg'][k]['quality']} {vm['jpeg'][k]['bytes_per_frame']:.0f} B" for k in match))
    for name in TARGETS:
        r, z = report[name], report[name]["sealed"]
        print(f"{name:10s} sealed link (protocol 2): {100 * z['overhead']:+.2f} % instructions per frame, encoder and "
              f"sending ({(r['instructions_per_frame'] + r['send_instructions_per_frame']) / 1e6:.2f} M -> "
              f"{(z['instructions_per_frame'] + z['send_instructions_per_frame']) / 1e6:.2f} M), RAM "
              f"{z['ram_bytes']:,d} B, opens to the plain stream: {z['opens_to_the_plain_stream']}")
    for k, m in match.items():
        j = report["m7"]["jpeg"][k]
        print(f"{k}: MCUCoder {m['mcucoder_bytes_per_frame']:.0f} B/frame at MS-SSIM {m['mcucoder_ms_ssim']}; "
              f"JPEG q{j['quality']} {j['bytes_per_frame']:.0f} B/frame at MS-SSIM {j['ms_ssim']} (firmware's files)")
    for name in TARGETS:
        e = report[name]["energy"]
        print(f"{name:10s} break-even (nJ per radio bit): intra k6 {e['k6']['break_even_nj_per_bit']}, "
              f"k12 {e['k12']['break_even_nj_per_bit']}"
              + "".join(f"; video {c} k6 {e[f'video_{c}']['k6']['break_even_nj_per_bit']}, "
                        f"k12 {e[f'video_{c}']['k12']['break_even_nj_per_bit']}" for c in CLIPS if f"video_{c}" in e))


if __name__ == "__main__":
    main()
