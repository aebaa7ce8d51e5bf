"""Robot and base station on two hosts (issue 32): frames as LatentChunk trains, the
base's delivery reports timed from them, and the whole split pipeline in two network
namespaces through a tbf bottleneck following the demo's steps (root; skipped, saying
why, where namespaces cannot be made)."""
from __future__ import annotations

import math
from array import array

import pytest

from mcucoder_ros.chunking import PART_BYTES, Reassembler, join_parts, part_groups, split_frame
from mcucoder_ros.control import DeliveryRateEstimator
from mcucoder_ros.msg import LatentChannels, LatentChunk


def _frame(seq=7, lens=(420, 380, 350, 900, 1300, 200, 150), refs=()):
    m = LatentChannels(sequence=seq, model_id=5, bitstream_version=3 if not refs else 2, num_channels=12,
                       latent_height=28, latent_width=28, width=224, height=224)
    m.header.stamp.sec, m.header.stamp.nanosec = 100, 5000
    m.header.frame_id = "cam"
    m.channel_indices = array("B", range(len(lens)))
    m.chunk_lengths = array("H", lens)
    m.payload = array("B", bytes((i * 7 + j) % 256 for i, n in enumerate(lens) for j in range(n)))
    if refs:
        m.reference_deltas = array("B", refs)
    return m


def test_split_and_join_give_the_frame_back():
    m = _frame(refs=(0, 1, 0, 2, 0, 0, 1))
    parts = split_frame(m, LatentChunk, frame_bytes=4000)
    assert [c.index for c in parts] == list(range(len(parts))) and all(c.count == len(parts) for c in parts)
    assert list(parts[0].part.channel_indices) == [0]          # chunk 0 alone: the first car of the train
    for c in parts:
        assert sum(c.part.chunk_lengths) == len(c.part.payload)
        assert len(c.part.chunk_lengths) == 1 or sum(c.part.chunk_lengths) <= PART_BYTES
        assert c.part.header.frame_id == "cam" and c.part.sequence == 7 and c.part.width == 224
    back = join_parts(list(reversed(parts)), LatentChannels)
    for f in ("channel_indices", "chunk_lengths", "payload", "reference_deltas", "sequence", "model_id",
              "bitstream_version", "width", "height", "latent_width"):
        assert list(getattr(back, f)) == list(getattr(m, f)) if f in ("channel_indices", "chunk_lengths", "payload",
                                                                     "reference_deltas") \
            else getattr(back, f) == getattr(m, f), f


def test_part_groups():
    assert part_groups([]) == [[]]
    assert part_groups([400]) == [[0]]
    assert part_groups([400, 300]) == [[0], [1]]
    assert part_groups([400, 700, 600, 2000, 10], 1200) == [[0], [1], [2], [3], [4]]
    assert part_groups([400, 500, 500, 100], 1200) == [[0], [1, 2, 3]]


class TokenBucket:
    """A shaper as tc's tbf: a packet leaves when the bucket holds its bytes; the bucket
    fills at the rate up to `burst` bytes, so after an idle spell `burst` bytes go at once."""

    def __init__(self, burst):
        self.burst, self.tokens, self.t = burst, burst, -math.inf

    def depart(self, ready, wire, rate_bps):
        t = max(ready, self.t)
        tokens = min(self.burst, self.tokens + (t - self.t) * rate_bps / 8) if math.isfinite(self.t) else self.burst
        if tokens < wire:
            t += (wire - tokens) * 8 / rate_bps
            tokens = wire
        self.tokens, self.t = tokens - wire, t
        return t


def _cross(asm, m, t_send, rate_bps, link_free, offset=0.0, pause_after=None, pause_s=0.0, lose=(), bucket=None):
    """The parts of m through a FIFO link of rate_bps from t_send (sender clock = receiver
    clock + offset), or through a token bucket; returns (events, when the link is free again)."""
    parts = split_frame(m, LatentChunk, frame_bytes=16 + 3 * len(m.chunk_lengths) + len(m.payload))
    events, t = [], t_send
    for c in parts:
        if pause_after is not None and c.index == pause_after + 1:
            t += pause_s                    # the sender was descheduled between two parts
        wire = sum(c.part.chunk_lengths) + 150
        if bucket is not None:
            link_free = bucket.depart(t, wire, rate_bps)
        else:
            start = max(t, link_free)
            link_free = start + wire * 8 / rate_bps
        if c.index not in lose:
            events += asm.add(c, link_free + 0.002, t + offset)
        t += 0.0002
    return events, link_free


@pytest.mark.parametrize("offset", [0.0, 2.0, -2.0, 1234.5])
def test_train_timing_gives_the_link_rate_whatever_the_clocks(offset):
    asm = Reassembler()
    free, rates = 0.0, []
    for i in range(20):
        m = _frame(seq=i, lens=(420, 380, 350, 400, 300, 200, 150))
        evs, free = _cross(asm, m, i * 0.1, 200_000, free, offset, pause_after=1 if i % 3 == 0 else None,
                           pause_s=0.03)
        finals = [r for f, r in evs if f is not None]
        assert len(finals) == 1 and finals[0].channels_received == 7
        r = finals[0]
        rates.append(r.rate_bps)
    # payload over payload+headers of the wire: the rate in the stream's own bytes
    goodput = 200_000 * 2200 / (2200 + 150 * len(part_groups([420, 380, 350, 400, 300, 200, 150])))
    assert all(abs(x / goodput - 1) < 0.1 for x in rates[3:]), rates


@pytest.mark.parametrize("lens", [(420, 380, 350), (420, 380, 350, 400, 300, 200, 150), (400, 900, 900, 900)])
def test_train_timing_through_a_token_bucket(lens):
    """tbf-style shaping lets the first 1600 bytes after an idle spell through at once (the
    two-namespace bench's bottleneck): only parts that queued are timed, so the rate is the
    shaper's, not the burst's (which read 1.25 Mbit/s on a 200 kbit/s link)."""
    asm, bucket, rates = Reassembler(), TokenBucket(1600), []
    for i in range(30):
        rate = 200_000 if i < 15 else 400_000
        evs, _ = _cross(asm, _frame(seq=i, lens=lens), i * 0.1, rate, 0.0, bucket=bucket)
        r = [r for f, r in evs if f is not None][0]
        rates.append((rate, r.rate_bps))
    timed = [(rate, x) for rate, x in rates if not math.isnan(x)]
    if len(lens) <= 3:      # two parts: the burst takes them both, nothing to time
        assert not timed, rates
        return
    assert len(timed) >= (20 if max(lens[1:]) > 800 else 5), rates
    # chunk bytes over wire bytes (150 of headers per part) of a part that queued
    for rate, x in timed:
        assert 0.6 * rate < x < 1.02 * rate, rates


def test_lost_part_finishes_the_frame_with_what_arrived():
    asm = Reassembler(timeout_s=0.3)
    m = _frame(seq=1, lens=(420, 1000, 1000, 1000))
    evs, free = _cross(asm, m, 0.0, 400_000, 0.0, lose=(2,))
    assert all(f is None and r.partial for f, r in evs)   # a progress report; the frame waits for part 2
    evs, _ = _cross(asm, _frame(seq=2), 0.1, 400_000, free)
    first = evs[0]
    assert first[0] is not None and first[1].sequence == 1 and first[1].channels_received == 3
    assert first[1].channels_sent == 4
    assert asm.stats["frames_incomplete"] == 1 and asm.stats["parts_lost"] == 1
    # the last frame's missing part: given out by the timeout
    evs, _ = _cross(asm, _frame(seq=3, lens=(420, 1000, 1000)), 0.2, 400_000, 1.0, lose=(1,))
    assert asm.expire(10.0)[0][1].sequence == 3


@pytest.mark.parametrize("offset", [2.0, -2.0])
def test_controller_estimate_is_the_same_with_the_base_clock_off(offset):
    """The estimator fed by train reports: the clocks' offset changes nothing."""
    out = {}
    for off in (0.0, offset):
        asm, est, free = Reassembler(), DeliveryRateEstimator(), 0.0
        for i in range(40):
            bw = 400_000 if i < 20 else 150_000
            m = _frame(seq=i, lens=(420, 380, 350, 400, 500, 600))
            bits = (16 + 18 + sum(m.chunk_lengths)) * 8
            est.on_sent(i, bits, i * 0.1)
            evs, free = _cross(asm, m, i * 0.1, bw, free, offset=0.0)
            for _, r in evs:
                est.on_report(r.sequence, r.bytes * 8, r.link_start + off, r.link_end + off, r.channels_sent,
                              r.channels_received, r.link_end + 0.005, r.partial, r.rate_bps)
        out[off] = est.rate()
    assert math.isclose(out[0.0], out[offset], rel_tol=1e-6)
    assert 0.8 * 150_000 * 0.6 < out[offset] < 150_000 * 1.05


# --- the whole thing in two network namespaces ------------------------------------------------

def _netns_or_skip():
    from mcucoder_ros.netns import available
    ok, why = available()
    if not ok:
        pytest.skip(f"two-host test needs network namespaces: {why}")


_COUNT_UDP = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 47001)); s.settimeout(1.5)
print("ready", flush=True)
n = 0
try:
    while True:
        s.recv(2000); n += 1
except socket.timeout:
    print(n, flush=True)
"""
_SEND_UDP = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(int(sys.argv[2])):
    try:
        s.sendto(bytes(200), (sys.argv[1], 47001))
    except PermissionError:     # the output hook's drop says EPERM to the sender (DDS goes on)
        pass
    time.sleep(0.0002)
"""


@pytest.mark.parametrize("loss", [0.0, 0.3])
def test_namespace_link_drops_the_traces_share_of_packets(loss):
    """TwoHosts.set_loss (nftables in the robot's namespace): datagrams to the base are
    dropped at random in the trace's share, and 0 drops none."""
    import subprocess
    import sys

    from mcucoder_ros.netns import BASE_ADDR, TwoHosts, loss_available
    ok, why = loss_available()
    if not ok:
        pytest.skip(f"packet loss on the namespace link: {why}")
    n = 3000
    with TwoHosts(prefix=f"mcl{int(loss * 10)}") as hosts:
        hosts.set_rate(50_000_000)
        hosts.set_loss(0.9)             # a first share replaced by the one under test
        hosts.set_loss(loss)
        rx = subprocess.Popen(hosts.exec_prefix("base") + [sys.executable, "-c", _COUNT_UDP],
                              stdout=subprocess.PIPE, text=True)
        assert rx.stdout.readline().strip() == "ready"
        subprocess.run(hosts.exec_prefix("robot") + [sys.executable, "-c", _SEND_UDP, BASE_ADDR, str(n)],
                       check=True, timeout=60)
        got = int(rx.communicate(timeout=30)[0].strip())
    assert abs(got / n - (1 - loss)) < 0.04, (loss, got)


@pytest.fixture(scope="module")
def two_host_runs(tmp_path_factory):
    """The demo's steps (2 Mbit/s -> 200 kbit/s -> 400 kbit/s) through tbf, the latent
    trains best effort; then with the base's report times 2 s off."""
    _netns_or_skip()
    from mcucoder_ros.apps.bench_two_hosts import demo_trace, run_once
    trace = demo_trace(16.0)
    work = tmp_path_factory.mktemp("two_hosts")
    runs = {}
    for off in (0.0, 2.0):
        runs[off] = run_once(trace, reliability="best_effort", clock_offset=off, domain_id=91, workdir=str(work),
                             tag=f"t{'p' if off else '0'}")
    return runs


def test_two_namespaces_every_frame_shown_or_reported(two_host_runs):
    for off, m in two_host_runs.items():
        assert m["frames_seen_by_controller"] > 100, off
        assert m["frames_unaccounted"] == 0, (off, m["frames_unaccounted"])
        assert m["frames_shown"] > 0.7 * m["frames_seen_by_controller"], off
        assert m["controller"].get("delivery_reports", 0) >= m["frames_sent"] - 3, off   # over the real path


def test_two_namespaces_follow_the_steps(two_host_runs):
    for off, m in two_host_runs.items():
        seg = {s["rate_bps"]: s for s in m["segments"]}
        # the stream fits each step (never more than the link carries)
        for rate, s in seg.items():
            assert s["use"] < 1.0, (off, rate, s)
        assert seg[2_000_000]["mean_k"] > seg[200_000]["mean_k"], (off, seg)
        assert max(m["max_gap_after_step_down_s"]) <= 1.0, (off, m["max_gap_after_step_down_s"])
        # a quiet 2-core host: on time 0.98-0.99, p95 178-198 ms, the bottleneck 0.89-0.98
        # used at 200 kbit/s (docs/ros.md); here with room for a slower or busier CI machine
        assert m["latency_ms_p95"] <= 400, (off, m["latency_ms_p95"])
        assert m["on_time_of_sent"] >= 0.8, (off, m["on_time_of_sent"])
        wire = {w["rate_bps"]: w for w in m["wire_use"]}
        assert wire[200_000]["use"] >= 0.6, (off, wire)


def test_two_namespaces_clock_offset_keeps_the_controller_on_the_reports(two_host_runs):
    """With the base's report times 2 s off, the controller still plans from them (the
    exact invariance is test_controller_estimate_is_the_same_with_the_base_clock_off;
    on a 2-core host shared with other work, on time varies between runs by more than
    the offset could change it)."""
    m = two_host_runs[2.0]
    seg = {s["rate_bps"]: s for s in m["segments"]}
    assert seg[2_000_000]["mean_k"] > seg[200_000]["mean_k"], seg
    assert m["on_time_of_sent"] >= 0.5, m["on_time_of_sent"]
