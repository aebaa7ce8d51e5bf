"""A cycle estimate for the Cortex-M55 images, from QEMU's execution trace.

QEMU counts instructions, not cycles, and an M55 spends more than one cycle on most
Helium (MVE) instructions.  This runs an image once under QEMU with its translation
blocks traced (`-d in_asm,exec,nochain`, filtered by `-dfilter` to the functions we
price), counts how often each block ran, disassembles the blocks with binutils (which
decodes MVE) and prices every executed instruction with the beat model below.

Beat model (Cortex-M55, stated, not measured: a board with a DWT cycle counter measures
cycles directly):
  * scalar instructions, including the low-overhead loop's WLS/DLS/LE: 1 cycle
    (TCM code and data, no wait states; branch penalties ignored);
  * a 128-bit MVE instruction is four beats and the M55 executes two beats per cycle:
    2 cycles alone, 1 cycle where it fully overlaps the next independent vector
    instruction (a load beside a multiply-accumulate, as in our inner loops), so
    [1, 2] cycles;
  * a gather load or scatter store (a vector of addresses) moves one element per cycle:
    128 / element bits cycles (4 for .32 lanes, 8 for .16, 16 for .8), both bounds.
The estimate is a range, `cycles_low` (every vector instruction overlapped) to
`cycles_high` (none overlapped), and a point, `cycles`: a vector instruction overlaps
(1 cycle) only when it follows, in the same block, a vector instruction of the other
kind (memory beside arithmetic), which is what the M55's single load/store and single
arithmetic pipe allow."""
import bisect
import re
import subprocess
from collections import defaultdict

MODEL = ("Cortex-M55 beat model: scalar 1 cycle; 128-bit MVE instruction 4 beats at 2 beats per "
         "cycle, 1-2 cycles with or without overlap; gather/scatter 1 element per cycle")

_GATHER = re.compile(r"\[(?:r\w+|sp), q\d+|\[q\d+")
_LANES = re.compile(r"\.[a-z]*(8|16|32|64)$")


def disassemble(elf):
    """Address -> (mnemonic, operands, function) for every instruction of the image."""
    out = subprocess.run(["arm-none-eabi-objdump", "-d", "-marmv8.1-m.main", str(elf)], capture_output=True,
                         text=True, check=True).stdout
    insns, func = {}, ""
    for line in out.splitlines():
        m = re.match(r"^[0-9a-f]+ <(.+)>:$", line)
        if m:
            func = m.group(1)
            continue
        m = re.match(r"^\s*([0-9a-f]+):\s+(?:[0-9a-f]{4} ?){1,2}\s+(\S+)\s*([^@;]*)", line)
        if m:
            insns[int(m.group(1), 16)] = (m.group(2), m.group(3).strip(), func)
    return insns


def price(mnemonic, operands):
    """(kind, low, high) of one instruction under the beat model; kind is None for a
    scalar instruction, else "mem" or "alu" (the M55's two vector pipes)."""
    if not mnemonic.startswith("v") or "q" not in operands:
        return None, 1, 1
    if mnemonic.startswith(("vldr", "vstr")):
        if _GATHER.search(operands):
            m = _LANES.search(mnemonic)
            n = 128 // int(m.group(1)) if m else 4
            return "mem", n, n
        return "mem", 1, 2
    return "alu", 1, 2


def function_ranges(elf, names):
    """-dfilter ranges covering the named functions (prefix match)."""
    out = subprocess.run(["arm-none-eabi-nm", "-S", str(elf)], capture_output=True, text=True, check=True).stdout
    ranges = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[2] in "tT" and parts[3].startswith(tuple(names)):
            ranges.append(f"0x{int(parts[0], 16) & ~1:x}+0x{int(parts[1], 16):x}")
    return ",".join(ranges)


def trace(qemu_cmd, cwd, elf, functions, timeout=900):
    """Run the image once with its blocks traced; price what ran in `functions`.
    Returns (semihosting stdout, {function: {"instructions", "cycles_low", "cycles_high"}})."""
    insns = disassemble(elf)
    addrs = sorted(insns)
    cmd = qemu_cmd + ["-d", "in_asm,exec,nochain", "-dfilter", function_ranges(elf, functions), "-D", "/dev/stdout"]
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    blocks, counts, console = {}, defaultdict(int), []
    pending = None
    for line in proc.stdout:
        if line.startswith("IN:"):
            pending = []
        elif line.startswith("0x") and pending is not None:
            pending.append(int(line[2:line.index(":")], 16))
        elif line.startswith("Trace"):
            key = line.split()[3]                     # [flags/pc/flags/cflags]
            if key not in blocks and pending:
                blocks[key] = (pending[0], pending[-1])
            pending = None
            counts[key] += 1
        elif line.startswith("MCU_REPORT"):
            console.append(line)
    if proc.wait(timeout=timeout) != 0:
        raise SystemExit(f"{elf}: traced run failed (exit {proc.returncode})")
    per = defaultdict(lambda: {"instructions": 0, "cycles_low": 0, "cycles": 0, "cycles_high": 0})
    for key, n in counts.items():
        if key not in blocks:
            continue
        start, last = blocks[key]
        # the block runs from its first instruction to the one holding its last listed byte
        i = bisect.bisect_left(addrs, start)
        end = addrs[bisect.bisect_right(addrs, last) - 1]
        prev = None
        while i < len(addrs) and addrs[i] <= end:
            mnem, ops, func = insns[addrs[i]]
            kind, lo, hi = price(mnem, ops)
            mid = lo if lo == hi or (prev is not None and kind != prev) else hi
            prev = kind
            f = per[func]
            f["instructions"] += n
            f["cycles_low"] += n * lo
            f["cycles"] += n * mid
            f["cycles_high"] += n * hi
            i += 1
    return "".join(console), dict(per)


def ratios(per, groups):
    """Cycles per instruction {"cycles_low", "cycles", "cycles_high"} over the functions of
    each group (function-name prefixes)."""
    out = {}
    for name, prefixes in groups.items():
        rows = [v for f, v in per.items() if f.startswith(tuple(prefixes))]
        n = sum(r["instructions"] for r in rows)
        if n:
            out[name] = {c: sum(r[c] for r in rows) / n for c in ("cycles_low", "cycles", "cycles_high")}
    return out


if __name__ == "__main__":      # a quick look: python3 tools/cycles.py ELF MACHINE DIR FUNC...
    import sys

    from report import qemu_cmd
    elf, machine, cwd, *funcs = sys.argv[1:]
    console, per = trace(qemu_cmd(machine, elf), cwd, elf, funcs)
    for f, v in sorted(per.items(), key=lambda kv: -kv[1]["instructions"]):
        print(f"{f:32s} {v['instructions']:>12,d} instructions, {v['cycles'] / v['instructions']:.2f} "
              f"({v['cycles_low'] / v['instructions']:.2f}-{v['cycles_high'] / v['instructions']:.2f}) cycles each")
