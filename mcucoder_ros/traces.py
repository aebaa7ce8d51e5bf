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


GENERATORS = {"burst_loss": burst_loss, "jitter": jitter, "fade_outage": fade_outage,
              "lossy_low_rate": lossy_low_rate}


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
