"""The resolution ladder's controller (control.LadderController): the scale requested
upstream follows the rate with hysteresis, k is chosen within the frame's own scale,
the receiver's picture never starves.  Simulated sources obeying the request one frame
later, with chunk sizes from the shipped model's ladder table at the camera's size."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcucoder_ros.control import ControllerConfig, LadderController
from mcucoder_ros.ladder import hull, load_table, rungs_of

TABLE = load_table()


def chunk_model(width, height, table=TABLE):
    """Bytes of each channel's chunk per scale for a camera of this size, from the table
    (per camera pixel), as a real source would produce them on average."""
    out = {}
    for sc, bpp in zip(table["scales"], table["bpp"]):
        per = [bpp[0]] + [bpp[c] - bpp[c - 1] for c in range(1, len(bpp))]
        out[int(math.log2(sc))] = [max(4.0, p * width * height / 8 - 4) for p in per]
    return out


def simulate(rate_at, seconds, fps=10.0, size=(640, 480), seed=0, age=None):
    """age: seconds from capture to the controller's decision per scale shift (the source's
    coding time); none by default."""
    rng = np.random.default_rng(seed)
    chunks = chunk_model(*size)
    ctrl = LadderController(TABLE, ControllerConfig(default_interval_s=1 / fps))
    scale, budget, rows = 0, 12, []
    for i in range(int(seconds * fps)):
        t = i / fps
        ctrl.on_link_quality(rate_at(t), t, 0.02)
        lengths = [int(b * rng.uniform(0.9, 1.1)) for b in chunks[scale][:budget]]
        a = age[scale] if age else 0.0
        d = ctrl.decide(lengths, t - a, t, age_s=a, scale_shift=scale)
        sent = ctrl.frame_bytes(lengths[:d.channels]) if d.channels else 0
        rows.append((t, scale, d.channels, sent, d.scale_shift))
        scale, budget = d.scale_shift, d.budget
    return rows


def test_table_ships_with_the_model_and_its_hull_uses_every_scale():
    assert TABLE is not None, "models/default/export.json has no ladder table: run `mcucoder ladder-table`"
    rungs = hull(rungs_of(TABLE))
    assert {r.scale_shift for r in rungs} == {0, 1, 2}
    assert rungs[0].scale_shift == 2 and rungs[-1].scale_shift == 0 and rungs[-1].k == 12


@pytest.mark.parametrize("rate,scale", [(40e3, 2), (3e6, 0)])
def test_steady_links_settle_on_a_scale_and_send_every_frame(rate, scale):
    rows = simulate(lambda t: rate, 20)
    late = [r for r in rows if r[0] >= 4]
    assert all(r[2] > 0 for r in late), "frames skipped on a steady link"
    assert {r[1] for r in late} == {scale}
    assert sum(r[3] for r in late) * 8 / (late[-1][0] - late[0][0] + 0.1) <= rate


def test_a_thin_link_a_full_size_camera_cannot_use_gets_the_picture_at_a_lower_rung():
    """640x480 at 10 frames/s: even k = 1 at the camera's size (~15 kbit a frame) does not
    fit 100 kbit/s; the ladder sends every frame anyway, at 1/2 or 1/4."""
    rows = simulate(lambda t: 100e3, 15)
    late = [r for r in rows if r[0] >= 3]
    assert all(r[2] > 0 for r in late) and all(r[1] >= 1 for r in late)


def test_a_source_too_slow_for_the_deadline_at_full_size_is_asked_for_a_smaller_picture():
    """A host encoder that needs 0.16 s for a 640x480 frame (0.05 s at 1/2, 0.015 at 1/4) on a
    3 Mbit/s link: every full-size frame is late before it reaches the link, whatever k.  The
    ladder weighs each scale by what the deadline leaves after that scale's age, so the
    camera moves to 1/2 and every frame is sent (measured live: on time 0.11 -> 0.59 on
    lossy_low_rate's first 20 s)."""
    rows = simulate(lambda t: 3e6, 10, age={0: 0.16, 1: 0.05, 2: 0.015})
    late = [r for r in rows if r[0] >= 1.0]
    assert all(r[1] == 1 for r in late), sorted({r[1] for r in late})
    assert all(r[2] > 0 for r in late), "frames skipped"


def test_step_down_is_followed_at_once_and_up_after_the_dwell():
    rate = lambda t: 3e6 if t < 10 else (60e3 if t < 20 else 3e6)  # noqa: E731
    rows = simulate(rate, 30)
    before = [r for r in rows if 6 <= r[0] < 10]
    assert {r[1] for r in before} == {0}
    down = next(r[0] for r in rows if r[0] >= 10 and r[4] > 0)
    assert down - 10 <= 0.15, "the scale must fall at the frame the rate does"
    up = next(r[0] for r in rows if r[0] >= 20 and r[4] == 0)
    assert 2.0 - 1e-9 <= up - 20 <= 4.0


@settings(max_examples=60, deadline=None)
@given(steps=st.lists(st.tuples(st.floats(2.0, 8.0), st.floats(20e3, 4e6)), min_size=1, max_size=4),
       seed=st.integers(0, 1000))
def test_scale_changes_at_most_once_per_2_s_on_steady_stretches(steps, seed):
    edges = np.cumsum([0.0] + [d for d, _ in steps])

    def rate(t):
        i = min(int(np.searchsorted(edges, t, side="right")) - 1, len(steps) - 1)
        return steps[i][1]
    rows = simulate(rate, edges[-1], seed=seed)
    for (d, _), start in zip(steps, edges):
        changes = [r[0] for a, r in zip(rows, rows[1:]) if start + 0.15 < r[0] < start + d and r[4] != a[4]]
        assert len(changes) <= 1 + int(d / 2.0), f"{len(changes)} scale changes in {d:.1f} s at a steady rate"
        assert all(b - a >= 2.0 - 1e-9 for a, b in zip(changes, changes[1:]))


def test_evaluate_abr_with_the_ladder_keeps_a_thin_link_showing(tmp_path):
    """evaluate-abr at a camera size other than 224x224 adds the ladder's strategies: on a
    stretch too thin for one channel at the camera's size (30 kbit/s for 320x240 at 10
    frames/s), channels only skips frames while the ladder shows every one at 1/2 or 1/4,
    and goes back to the camera's size once the link returns."""
    import json
    import subprocess
    import sys
    from pathlib import Path
    trace = tmp_path / "thin.csv"
    trace.write_text("t,bandwidth_bps,loss,delay_ms\n0,250000,0,20\n4,30000,0,20\n10,250000,0,20\n16,250000,0,20\n")
    out = tmp_path / "abr.json"
    r = subprocess.run([str(Path(sys.executable).parent / "mcucoder-ros"), "evaluate-abr", "--trace", str(trace),
                        "--size", "320x240", "--max-frames", "3", "--json", str(out), "--plot", str(tmp_path / "a.png"),
                        "--strategies", "ours", "ours_ladder", "jpeg_size_ladder"],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr
    res = json.loads(out.read_text())
    assert res["frame_size"] == [320, 240]
    s = res["strategies"]
    ours, lad = s["ours"], s["ours_ladder"]
    assert lad["on_time_ratio"] >= ours["on_time_ratio"] + 0.2 and lad["on_time_ratio"] >= 0.95
    sc, t, q = lad["series"]["scale"], lad["series"]["t"], lad["series"]["ms_ssim"]
    thin = [v for tt, v, ok in zip(t, q, lad["series"]["on_time"]) if 5 <= tt < 10 and ok]
    assert len(thin) >= 45 and min(thin) > 0.5         # a real picture on every frame of the thin stretch
    assert sum(1 for tt, ok in zip(t, ours["series"]["on_time"]) if 5 <= tt < 10 and ok) <= 5
    assert all(v > 1 for tt, v in zip(t, sc) if 5 <= tt < 10) and all(v == 1 for tt, v in zip(t, sc) if tt >= 14)
    assert lad["scale_switches"] <= 4
    assert "scale" in s["jpeg_size_ladder"]["series"] and (tmp_path / "a.png").stat().st_size > 10_000
