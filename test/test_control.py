"""The bitrate controller's decision rule (pure logic)."""
from mcucoder_ros.control import BitrateController, ControllerConfig

SIZES = [500, 480, 460, 440, 430, 420, 410, 400, 390, 380, 370, 360]
FULL_BPS = (16 + sum(3 + s for s in SIZES)) * 8 * 15


def run(ctrl, bw, frames, t0=0.0, k_enc=12):
    out = []
    for i in range(frames):
        t = t0 + i / 15
        ctrl.on_link_quality(bw, t)
        d = ctrl.decide(SIZES[:k_enc], t, t)
        out.append(d)
        k_enc = d.budget
    return out


def test_unknown_bandwidth_sends_everything():
    d = BitrateController().decide(SIZES, 0.0, 0.0)
    assert d.channels == 12 and d.source == "default"


def test_step_down_is_immediate_and_fits():
    c = BitrateController()
    run(c, 10 * FULL_BPS, 10)
    after = run(c, FULL_BPS / 3, 10, t0=10 / 15)
    for d in after:
        bits = (16 + sum(3 + s for s in SIZES[:d.channels])) * 8 * 15
        assert bits <= FULL_BPS / 3 and d.channels >= 1


def test_hysteresis_rises_slowly_and_does_not_flap():
    c = BitrateController(ControllerConfig(up_hold_frames=5))
    run(c, FULL_BPS / 4, 10)
    ks = [d.channels for d in run(c, 10 * FULL_BPS, 60, t0=10 / 15)]
    assert all(b - a in (0, 1) for a, b in zip(ks, ks[1:]))       # one channel at a time
    assert ks[-1] == 12 and ks[4] <= ks[0] + 1
    ks = [d.channels for d in run(c, FULL_BPS * 0.6, 60, t0=70 / 15)]
    changes = sum(a != b for a, b in zip(ks[10:], ks[11:]))
    assert changes <= 2                                              # settles


def test_min_channels_when_nothing_fits():
    c = BitrateController()
    d = run(c, 1000.0, 3)[-1]
    assert d.channels == 1


def test_stale_link_report_ignored():
    c = BitrateController()
    c.on_link_quality(10_000, 0.0)
    assert c.decide(SIZES, 0.0, 0.1).channels == 1
    assert c.decide(SIZES, 5.0, 5.0).source == "default"
