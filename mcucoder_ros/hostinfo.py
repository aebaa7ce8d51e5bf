"""What a benchmark ran on: CPU model, cores, vector units, library versions.

Speed figures are only comparable on the same kind of CPU (machines of one cloud
"kind" differ from day to day), so every benchmark stores this beside its numbers."""
from __future__ import annotations

import os
import platform

# vector extensions that decide how fast onnxruntime's FP32 and INT8 kernels run
SIMD_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8",
              "asimd", "asimddp", "sve", "i8mm")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_flags() -> list[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith(("flags", "features")):
                    have = set(line.split(":", 1)[1].split())
                    return [f for f in SIMD_FLAGS if f in have]
    except OSError:
        pass
    return []


def host_info() -> dict:
    info = {"cpu_model": cpu_model(), "cpu_count": os.cpu_count(), "machine": platform.machine(),
            "simd": _cpu_flags(), "python": platform.python_version()}
    try:
        import onnxruntime
        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    return info


def describe(info: dict) -> str:
    simd = ", ".join(info.get("simd", [])) or "none found"
    return f"{info['cpu_model']}, {info['cpu_count']} cores ({simd}); onnxruntime {info.get('onnxruntime', '?')}"
