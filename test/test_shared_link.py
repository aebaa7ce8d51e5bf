"""Several cameras on one link: the allocation rule and SharedLinkController (pure logic)."""
import pytest

from mcucoder_ros.control import (
    BitrateController,
    CameraSpec,
    SharedLinkController,
    allocate,
    channel_gains,
)

SIZES = [500, 480, 460, 440, 430, 420, 410, 400, 390, 380, 370, 360]
GAINS = channel_gains({1: 0.77, 3: 0.897, 6: 0.937, 9: 0.955, 12: 0.963})


def cam(name, weight=1.0, min_channels=1, max_channels=12, fps=10.0, sizes=SIZES):
    return {"name": name, "weight": weight, "min_channels": min_channels, "max_channels": max_channels,
            "fps": fps, "sizes": list(sizes), "gains": GAINS}


def k_of(share, fps=10.0, sizes=SIZES):
    """The largest k whose frames fit the share."""
    return max(k for k in range(0, 13) if BitrateController.stream_bytes(sizes[:k]) * 8 * fps <= share + 1e-6)


def test_gains_fall_with_the_channel_index():
    assert all(a >= b - 1e-12 for a, b in zip(GAINS, GAINS[1:])) and GAINS[0] == pytest.approx(0.77)


def test_shares_add_up_to_the_budget_and_equal_cameras_get_equal_k():
    s = allocate(600_000, [cam("a"), cam("b"), cam("c")])
    assert sum(s.values()) == pytest.approx(600_000)
    ks = sorted(k_of(v) for v in s.values())
    assert ks[-1] - ks[0] <= 1


def test_the_heavier_camera_gets_more_channels():
    s = allocate(400_000, [cam("front", weight=3.0), cam("left"), cam("right")])
    assert k_of(s["front"]) > k_of(s["left"]) and k_of(s["front"]) > k_of(s["right"])


def test_a_cheaper_channel_buys_more():
    """Same weight, one camera's chunks cost half (a still scene in video mode): it gets more channels."""
    s = allocate(300_000, [cam("busy"), cam("still", sizes=[v // 2 for v in SIZES])])
    assert k_of(s["still"], sizes=[v // 2 for v in SIZES]) > k_of(s["busy"])


def test_minimums_first_and_by_weight_when_the_link_is_short():
    one = BitrateController.stream_bytes(SIZES[:2]) * 8 * 10          # 2 channels at 10 frames/s
    # too short for every minimum at 10 frames/s: each camera keeps its minimum k at a
    # frame rate by its weight; none goes dark
    s = allocate(2.5 * one, [cam("a", min_channels=2, weight=1), cam("b", min_channels=2, weight=5),
                             cam("c", min_channels=2, weight=2)])
    assert sum(s.values()) == pytest.approx(2.5 * one)
    assert s["b"] == pytest.approx(one)                               # its full minimum: 5/8 would be more
    assert s["c"] == pytest.approx(2 * s["a"]) and s["a"] > 0.4 * one
    s = allocate(10 * one, [cam("a", min_channels=2), cam("b", min_channels=6, weight=0.1)])
    assert k_of(s["b"]) >= 6                                         # a minimum holds whatever the weight


def test_max_channels_caps_a_camera():
    s = allocate(5_000_000, [cam("a", max_channels=3), cam("b")])
    assert k_of(s["a"]) == 3 and k_of(s["b"]) == 12


def run_cameras(ctrl, names, bw, seconds, t0=0.0, fps=10.0, offsets=None):
    """Frames from each camera at fps, interleaved; returns {name: [Decision]}."""
    out = {n: [] for n in names}
    offsets = offsets or {n: i / (fps * len(names)) for i, n in enumerate(names)}
    events = sorted((t0 + j / fps + offsets[n], n, j) for n in names for j in range(int(seconds * fps)))
    for t, n, j in events:
        ctrl.on_link_quality(bw, t)
        d = ctrl.decide(n, SIZES, t, t)
        if d.channels:
            ctrl.on_sent(n, j, BitrateController.stream_bytes(SIZES[:d.channels]) * 8, t)
        out[n].append(d)
    return out


def test_shared_controller_fits_the_link_and_follows_weights():
    ctrl = SharedLinkController([CameraSpec("front", weight=3.0), CameraSpec("left"), CameraSpec("right")], GAINS)
    bw = 450_000
    out = run_cameras(ctrl, ["front", "left", "right"], bw, 10)
    bits = {n: sum(BitrateController.stream_bytes(SIZES[:d.channels]) * 8 for d in ds[20:]) / (len(ds[20:]) / 10)
            for n, ds in out.items()}
    assert sum(bits.values()) <= bw                                     # together within the link
    assert sum(bits.values()) >= 0.75 * bw
    mean_k = {n: sum(d.channels for d in ds[20:]) / len(ds[20:]) for n, ds in out.items()}
    assert mean_k["front"] > mean_k["left"] + 1 and mean_k["front"] > mean_k["right"] + 1


def test_independent_controllers_overrun_the_link():
    ctrl = SharedLinkController([CameraSpec("a"), CameraSpec("b"), CameraSpec("c")], GAINS, strategy="independent")
    bw = 450_000
    out = run_cameras(ctrl, ["a", "b", "c"], bw, 5)
    planned = sum(d.target_bps for ds in out.values() for d in ds[-1:])
    assert planned > 2 * bw                                             # each plans for the whole link


def test_a_camera_that_stops_gives_its_share_back_and_one_that_joins_gets_one():
    ctrl = SharedLinkController([CameraSpec("a"), CameraSpec("b")], GAINS)
    bw = 400_000
    run_cameras(ctrl, ["a", "b"], bw, 3)
    assert set(ctrl.shares) == {"a", "b"}
    before = ctrl.shares["a"]
    run_cameras(ctrl, ["a"], bw, 3, t0=3.0)                            # b stopped
    assert set(ctrl.shares) == {"a"} and ctrl.shares["a"] > 1.5 * before
    out = run_cameras(ctrl, ["a", "c"], bw, 3, t0=6.0)                  # c joined (never configured)
    assert set(ctrl.shares) == {"a", "c"} and ctrl.shares["c"] > 0
    assert out["c"][-1].channels >= 1 and ctrl.specs["c"].weight == 1.0
