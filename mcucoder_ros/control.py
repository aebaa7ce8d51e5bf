"""Channel-budget control: pick k per frame so the stream fits the available bandwidth.

Pure logic (no ROS).  Documented in docs/bitrate-control.md.
  * available bandwidth: the latest fresh LinkQuality report, else the receive-side
    delivery estimate, else unknown (all channels pass)
  * a byte credit refills by headroom x available x frame interval per frame and is
    capped at what the frame's deadline allows on the link; k = the largest prefix of
    channels whose bytes (exact for the channels present, running estimates for the
    rest) plus bitstream overhead fit the credit.  So the average uses `headroom` of
    the link, and k alternates between neighbouring levels when the budget lies
    between them; when the link shrinks, k falls at once (never below min_channels)
    instead of frames being dropped
  * deadline: a frame is due one frame interval + `deadline_slack_s` after capture,
    and is planned to end `deadline_margin_s` earlier (the hop to the link and jitter);
    its cap is the link time left after its age at the decision, the link time still
    owed to earlier frames (a virtual queue at the available bandwidth) and the
    link's one-way delay.  A frame may so take a little more than one interval when
    the one before it took less: no backlog builds, and whole channels can fill the
    link when one channel is a large share of it
  * k rises by at most one channel per frame, and not for `up_hold_frames` frames
    after the bandwidth fell, so quality does not flap after congestion
  * the budget sent upstream is k + 1: one channel of look-ahead, so that rising
    decisions use real chunk sizes
  * without LinkQuality, the delivery estimate is used, and bits forwarded but not yet
    reported delivered are held to one frame interval of it (like a congestion window)
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from .codec.bitstream import CHUNK_ENTRY, HEADER
from .codec.geometry import LATENT_CHANNELS

PRIOR_CHUNK_BYTES = 420.0   # typical chunk of the shipped model at 224x224 (before any frame is seen)


@dataclass
class ControllerConfig:
    headroom: float = 0.9           # average share of the available bandwidth we plan to use
    up_hold_frames: int = 5         # frames without rising after the bandwidth fell
    min_channels: int = 1
    max_channels: int = LATENT_CHANNELS
    size_smoothing: float = 0.3     # EWMA weight of a new chunk-size observation
    link_stale_s: float = 2.0       # LinkQuality older than this is ignored
    default_interval_s: float = 1 / 15
    deadline_slack_s: float = 0.05  # a frame is due one frame interval + this after capture
    deadline_margin_s: float = 0.01  # link time left unplanned before each deadline (hop to the link, jitter)


@dataclass
class Decision:
    channels: int                   # k forwarded for this frame
    budget: int                     # k requested upstream
    available_bps: float            # NaN when unknown
    target_bps: float
    source: str


@dataclass
class BitrateController:
    cfg: ControllerConfig = field(default_factory=ControllerConfig)

    def __post_init__(self):
        self.chunk_est = [PRIOR_CHUNK_BYTES] * LATENT_CHANNELS
        self.k = self.cfg.max_channels
        self.hold = 0
        self.credit = 0.0
        self._last_avail = math.nan
        self.inflight = {}              # sequence -> (bits, sent time): forwarded, not yet reported delivered
        self.link_bps = math.nan
        self.link_t = -math.inf
        self.delivery_bps = math.nan
        self.interval = self.cfg.default_interval_s
        self._last_stamp = None
        self.delay_s = 0.0              # one-way link delay: LinkQuality RTT / 2, or delivery reports
        self.link_free_at = -math.inf   # when the link would finish the frames forwarded so far

    # -- inputs ----------------------------------------------------------------------
    def on_link_quality(self, bandwidth_bps: float, now: float, rtt_s: float = math.nan) -> None:
        if math.isfinite(bandwidth_bps) and bandwidth_bps > 0:
            self.link_bps, self.link_t = bandwidth_bps, now
        if math.isfinite(rtt_s) and rtt_s >= 0:
            self.delay_s = rtt_s / 2

    def on_link_delay(self, delay_s: float) -> None:
        """One-way delay seen by a delivery report (arrival minus the link's last byte)."""
        if math.isfinite(delay_s) and delay_s >= 0:
            self.delay_s += 0.2 * (delay_s - self.delay_s)

    def on_delivery_estimate(self, bps: float) -> None:
        self.delivery_bps = bps if math.isfinite(bps) and bps > 0 else math.nan

    def on_sent(self, sequence: int, bits: float, now: float) -> None:
        self.inflight[sequence] = (bits, now)

    def on_delivered(self, sequence: int) -> None:
        self.inflight.pop(sequence, None)

    def inflight_bits(self, now: float) -> float:
        for s in [s for s, (_, t) in self.inflight.items() if now - t > 2.0]:
            del self.inflight[s]         # reports lost: forget after 2 s
        return sum(b for b, _ in self.inflight.values())

    def available(self, now: float) -> tuple[float, str]:
        if math.isfinite(self.link_bps) and now - self.link_t <= self.cfg.link_stale_s:
            return self.link_bps, "link_quality"
        if math.isfinite(self.delivery_bps):
            return self.delivery_bps, "delivery"
        return math.nan, "default"

    # -- per frame ---------------------------------------------------------------------
    @staticmethod
    def frame_bytes(chunk_bytes) -> float:
        return HEADER.size + sum(CHUNK_ENTRY.size + b for b in chunk_bytes)

    def frame_time(self, age_s: float, wait_s: float = 0.0) -> float:
        """Link time one frame may take: what its deadline (interval + slack after
        capture, less the margin for what happens after this decision) leaves after the
        frame's age at this decision, the link time still owed to frames forwarded
        before it, and the link delay ahead of it; at least a quarter interval, so k
        never collapses for one late frame."""
        lost = sum(min(max(x, 0.0), self.interval) for x in (age_s, wait_s, self.delay_s))
        due = self.interval + max(0.0, self.cfg.deadline_slack_s - self.cfg.deadline_margin_s)
        return min(due, max(0.25 * self.interval, due - lost))

    def decide(self, chunk_lengths: list[int], stamp_s: float, now: float, age_s: float = 0.0) -> Decision:
        cfg = self.cfg
        if self._last_stamp is not None and 0 < stamp_s - self._last_stamp < 5.0:
            self.interval += 0.2 * (stamp_s - self._last_stamp - self.interval)
        self._last_stamp = stamp_s
        for c, n in enumerate(chunk_lengths):
            self.chunk_est[c] += cfg.size_smoothing * (n - self.chunk_est[c])
        avail, source = self.available(now)
        present = len(chunk_lengths)
        if not math.isfinite(avail):
            self.k = cfg.max_channels
            return Decision(min(self.k, present), self.k, avail, math.nan, source)
        fell = math.isfinite(self._last_avail) and avail < 0.9 * self._last_avail
        if fell:
            self.hold = cfg.up_hold_frames               # congestion: no rising for a while
        self._last_avail = avail
        # bytes this frame may take: what its deadline leaves, after the link time still
        # owed to earlier frames (a virtual queue at the available bandwidth)
        wait = max(0.0, self.link_free_at - now)
        frame_cap = avail * self.frame_time(age_s, wait) / 8.0
        target_bytes = cfg.headroom * avail * self.interval / 8.0
        self.credit = min(self.credit + target_bytes, frame_cap)
        if fell:    # credit saved at the old rate buys no deadline slack at the new one
            self.credit = min(self.credit, avail * self.interval / 8.0)
        if source == "delivery":
            # without a link report, bits still in flight show a link slower than the
            # estimate before any report can: never have more than one interval queued
            allowed = (avail * (self.interval + 0.05) - self.inflight_bits(now)) / 8.0
            self.credit = min(self.credit, max(0.0, allowed))
        sizes = list(chunk_lengths) + self.chunk_est[present:]
        k_fit = cfg.min_channels
        for k in range(cfg.max_channels, cfg.min_channels - 1, -1):
            if self.frame_bytes(sizes[:k]) <= self.credit:
                k_fit = k
                break
        if k_fit > self.k:
            k_fit = self.k if self.hold > 0 else self.k + 1
        self.hold = max(0, self.hold - 1)
        self.k = max(cfg.min_channels, min(k_fit, cfg.max_channels))
        k_sent = min(self.k, present)
        sent = self.frame_bytes(sizes[:k_sent])
        self.credit = max(0.0, self.credit - sent)
        self.link_free_at = max(now, self.link_free_at) + 8.0 * sent / avail
        return Decision(k_sent, min(cfg.max_channels, self.k + 1), avail, target_bytes * 8 / self.interval, source)


# The JPEG baseline's quality ladder (OpenCV qualities), low to high.
JPEG_LADDER = (3, 5, 8, 10, 15, 20, 30, 40, 50, 60, 70, 80, 90)


class JpegLadder:
    """The JPEG baseline's controller, as abr_image_transport does it: a target bitrate
    multiplied by 0.7 on instability and by 1.5 after a stable 2-s window; each frame
    gets the highest ladder quality whose size fits the target."""

    def __init__(self, fps: float, start_bps: float = 1e6, max_bps: float = 5e6, window_s: float = 2.0):
        self.interval = 1.0 / fps
        self.target, self.max_bps, self.window = start_bps, max_bps, window_s
        self.changed, self.unstable = 0.0, -1e9

    def on_report(self, capture: float, link_start: float, link_end: float, late: bool) -> None:
        """A delivery report: late, or queued over half a frame interval = unstable."""
        if late or link_start - capture > self.interval / 2:
            self.unstable = max(self.unstable, link_end)

    def on_backlog(self, t: float) -> None:
        self.unstable = max(self.unstable, t)

    def choose(self, t: float, sizes: dict) -> int:
        """sizes: JPEG quality -> bytes of this frame.  Returns the quality to send."""
        if self.unstable > self.changed:               # instability seen since the last change
            self.target *= 0.7
            self.changed = t
        elif t - self.changed >= self.window:          # a stable window: probe upwards
            self.target = min(self.target * 1.5, self.max_bps)
            self.changed = t
        fits = [q for q in sorted(sizes) if sizes[q] * 8 / self.interval <= self.target]
        return max(fits) if fits else min(sizes)


class FrameRateGate:
    """Forwards whole frames no faster than the receiver can show them.

    The receiver reports its capacity (ReceiverReport.max_fps); when that is below the
    source's frame rate, frames are skipped evenly (a credit of receiver/source rate
    per frame) instead of being sent and then dropped at the receiver.  Channels are
    not cut for it: a frame that goes keeps the quality the link allows."""

    def __init__(self, margin: float = 0.95, stale_s: float = 3.0):
        self.margin, self.stale_s = margin, stale_s
        self.receiver_fps, self._report_t = math.nan, -math.inf
        self.source_interval, self._last_stamp = math.nan, None
        self.credit = 1.0

    def on_receiver_fps(self, fps: float, now: float) -> None:
        if fps > 0 and math.isfinite(fps):
            self.receiver_fps, self._report_t = fps, now

    @property
    def source_fps(self) -> float:
        return 1.0 / self.source_interval if self.source_interval > 0 else math.nan

    def forward_fps(self, now: float) -> float:
        """The frame rate to forward: the source's, or the receiver's capacity x margin if lower."""
        src = self.source_fps
        if now - self._report_t > self.stale_s or not math.isfinite(self.receiver_fps):
            return src                                   # no (fresh) report: do not hold back
        cap = self.receiver_fps * self.margin
        return cap if not math.isfinite(src) or cap < src else src

    def admit(self, stamp_s: float, now: float) -> bool:
        """Called for every source frame in order: forward it (True) or skip it."""
        if self._last_stamp is not None and stamp_s > self._last_stamp:
            dt = stamp_s - self._last_stamp
            self.source_interval = dt if math.isnan(self.source_interval) else \
                self.source_interval + 0.2 * (dt - self.source_interval)
        self._last_stamp = stamp_s
        src, fwd = self.source_fps, self.forward_fps(now)
        if not (math.isfinite(src) and math.isfinite(fwd)) or fwd >= src:
            self.credit = 1.0
            return True
        self.credit += fwd / src
        admit = self.credit >= 1.0 - 1e-9
        if admit:
            self.credit -= 1.0
        self.credit = min(self.credit, 1.0)     # capped: skipped frames are not made up in bursts
        return admit
