"""Link traces that look like real radio links, generated from a seed (`mcucoder-ros
make-traces`, docs/abr.md).  Each is a CSV `t,bandwidth_bps,loss,delay_ms` of steps of
STEP_S seconds, for link_emulation.Trace:

  burst_loss      200 kbit/s with Gilbert-Elliott loss: a good state (0.5 % chunk loss)
                  and a bad one (40 %), switching with probabilities per step, so losses
                  come in bursts (mean bad stretch 0.4 s, about every 3 s)
  jitter          180 kbit/s, delay 20 ms plus a jitter of mean 25 ms (lognormal), and
                  the bandwidth wandering +-20 % (a congested Wi-Fi hop)
  fade_outage     a slow fade from 250 to 40 kbit/s and back over 20 s, then a 2-s outage
                  (nothing crosses), then recovery
  lossy_low_rate  200 kbit/s with two low-rate lossy stretches (60 kbit/s, 8 % loss, 4 s)
                  and a 1.5-s outage between them: the case where a controller without
                  link reports must tell congestion from loss
  outage_lossy    outages (0.3-3 s, nothing crosses), each followed by a lossy low-rate
                  stretch (30-60 kbit/s, 5-15 % chunk loss, 2-5 s), then 70-150 kbit/s
                  wandering for 8-12 s: the trace that left a controller without link
                  reports silent for good after the first outage (issue 28)
"""
from __future__ import annotations

import math
import random
from pathlib import Path

STEP_S = 0.1
DURATION_S = 40.0


def _steps(duration: float = DURATION_S):
    return [round(i * STEP_S, 3) for i in range(int(round(duration / STEP_S)))]


def burst_loss(rng: random.Random) -> list[tuple]:
    p_enter_bad, p_leave_bad = 0.033, 0.25        # per step: bad every ~3 s, for ~0.4 s
    bad, rows = False, []
    for t in _steps():
        bad = rng.random() < (1 - p_leave_bad if bad else p_enter_bad)
        rows.append((t, 200_000, 0.40 if bad else 0.005, 20))
    return rows


def jitter(rng: random.Random) -> list[tuple]:
    rows, bw = [], 180_000.0
    for t in _steps():
        bw = min(216_000, max(144_000, bw * math.exp(rng.gauss(0, 0.04))))
        rows.append((t, round(bw), 0.0, round(20 + rng.lognormvariate(math.log(20), 0.6), 1)))
    return rows


def fade_outage(rng: random.Random) -> list[tuple]:
    rows = []
    for t in _steps():
        if 5 <= t < 25:              # cosine fade 250 -> 40 -> 250 kbit/s
            bw = 145_000 + 105_000 * math.cos(2 * math.pi * (t - 5) / 20)
        elif 28 <= t < 30:           # outage
            bw = 0
        else:
            bw = 250_000
        rows.append((t, round(bw * (1 + rng.gauss(0, 0.02))) if bw else 0, 0.0, 20))
    return rows


def lossy_low_rate(rng: random.Random) -> list[tuple]:
    rows = []
    for t in _steps():
        if 8 <= t < 12 or 24 <= t < 28:
            bw, loss = 60_000, 0.08
        elif 17 <= t < 18.5:
            bw, loss = 0, 0.0
        else:
            bw, loss = 200_000, 0.0
        rows.append((t, round(bw * (1 + rng.gauss(0, 0.02))) if bw else 0, loss, 20))
    return rows


def outage_lossy(rng: random.Random, duration: float = DURATION_S) -> list[tuple]:
    rows, t = [], 0.0
    steps = _steps(duration)
    plan = []                 # (until, kind, rate, loss)
    t = 2.0
    plan.append((t, "good", 150_000, 0.0))
    while t < duration:
        out = rng.uniform(0.3, 3.0)
        low = rng.uniform(2.0, 5.0)
        good = rng.uniform(8.0, 12.0)
        plan += [(t + out, "outage", 0, 0.0),
                 (t + out + low, "low", rng.uniform(30_000, 60_000), rng.uniform(0.05, 0.15)),
                 (t + out + low + good, "good", 0, 0.0)]
        t += out + low + good
    bw, i = 110_000.0, 0
    for t in steps:
        while plan[i][0] <= t:
            i += 1
        _, kind, rate, loss = plan[i]
        if kind == "good":
            bw = min(150_000, max(70_000, bw * math.exp(rng.gauss(0, 0.08))))
            rows.append((t, round(bw), 0.0, 20))
        elif kind == "outage":
            rows.append((t, 0, 0.0, 20))
        else:
            rows.append((t, round(rate * (1 + rng.gauss(0, 0.05))), round(loss, 3), 20))
    return rows


GENERATORS = {"burst_loss": burst_loss, "jitter": jitter, "fade_outage": fade_outage,
              "lossy_low_rate": lossy_low_rate, "outage_lossy": outage_lossy}


# Families of random links for the controller's property tests (test/test_abr_properties.py):
# each call draws one trace of the family from rng.
FAMILIES = ("burst_loss", "outage", "step", "jitter", "outage_lossy")


def _log_uniform(rng: random.Random, lo: float, hi: float) -> float:
    return math.exp(rng.uniform(math.log(lo), math.log(hi)))


def random_trace(family: str, rng: random.Random, duration: float = 12.0) -> list[tuple]:
    """One random link of a family, rows (t, bandwidth_bps, loss, delay_ms) every STEP_S:
    burst_loss    Gilbert-Elliott chunk loss (good 0-1 %, bad 20-60 %) at 40-400 kbit/s
    outage        1-3 outages of 0.2-3 s (nothing crosses) on a 40-400 kbit/s link
    step          40-400 kbit/s, then 1-2 steps by a factor of 0.1 to 10
    jitter        40-400 kbit/s wandering +-30 %, delay 20 ms + lognormal jitter (mean 10-40 ms)
    outage_lossy  an outage of 0.2-3 s, then 1-4 s at 30-60 kbit/s with 5-15 % loss, then
                  70-150 kbit/s"""
    if family not in FAMILIES:
        raise ValueError(f"unknown trace family {family!r} (one of {', '.join(FAMILIES)})")
    steps = _steps(duration)
    rate = _log_uniform(rng, 40_000, 400_000)
    rows = []
    if family == "burst_loss":
        p_in, p_out = rng.uniform(0.01, 0.1), rng.uniform(0.1, 0.5)
        good, bad_loss, bad = rng.uniform(0, 0.01), rng.uniform(0.2, 0.6), False
        for t in steps:
            bad = rng.random() < (1 - p_out if bad else p_in)
            rows.append((t, rate, bad_loss if bad else good, 20))
    elif family == "outage":
        spans = []
        for _ in range(rng.randint(1, 3)):
            start = rng.uniform(1.0, duration - 1.0)
            spans.append((start, start + rng.uniform(0.2, 3.0)))
        rows = [(t, 0 if any(a <= t < b for a, b in spans) else rate, 0.0, 20) for t in steps]
    elif family == "step":
        changes = sorted(rng.uniform(1.0, duration - 1.0) for _ in range(rng.randint(1, 2)))
        levels = [rate]
        for _ in changes:
            levels.append(min(2e6, max(4_000, levels[-1] * _log_uniform(rng, 0.1, 10))))
        rows = [(t, levels[sum(t >= c for c in changes)], 0.0, 20) for t in steps]
    elif family == "jitter":
        bw, mean_jitter = rate, rng.uniform(10, 40)
        for t in steps:
            bw = min(1.3 * rate, max(0.7 * rate, bw * math.exp(rng.gauss(0, 0.05))))
            rows.append((t, bw, 0.0, 20 + rng.lognormvariate(math.log(mean_jitter), 0.6)))
    else:
        start = rng.uniform(0.5, duration / 3)
        out_end = start + rng.uniform(0.2, 3.0)
        low_end = out_end + rng.uniform(1.0, 4.0)
        low, loss, bw = rng.uniform(30_000, 60_000), rng.uniform(0.05, 0.15), rng.uniform(70_000, 150_000)
        for t in steps:
            if t < start:
                rows.append((t, rate, 0.0, 20))
            elif t < out_end:
                rows.append((t, 0, 0.0, 20))
            elif t < low_end:
                rows.append((t, low, loss, 20))
            else:
                bw = min(150_000, max(70_000, bw * math.exp(rng.gauss(0, 0.08))))
                rows.append((t, bw, 0.0, 20))
    return rows


def render(rows: list[tuple]) -> str:
    return "t,bandwidth_bps,loss,delay_ms\n" + "".join(f"{t:.2f},{bw},{loss:g},{d:g}\n" for t, bw, loss, d in rows)


def write_traces(out_dir, seed: int = 21) -> list[Path]:
    """Every generated trace into out_dir (each from its own stream of the seed)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (name, gen) in enumerate(GENERATORS.items()):
        p = out / f"{name}.csv"
        p.write_text(render(gen(random.Random(seed * 1000 + i))))
        paths.append(p)
    return paths
