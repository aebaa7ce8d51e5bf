"""Channel-budget control: pick k per frame so the stream fits the available bandwidth.

Pure logic (no ROS).  Documented in docs/bitrate-control.md.
  * available bandwidth: the latest fresh LinkQuality report, else the receive-side
    delivery estimate, else unknown (all channels pass)
  * a byte credit refills by headroom x available x frame interval per frame and is
    capped at one frame interval of the full available bandwidth; k = the largest
    prefix of channels whose bytes (exact for the channels present, running
    estimates for the rest) plus bitstream overhead fit the credit.  So no frame takes
    longer than a frame interval on the link (no backlog), the average uses
    `headroom` of the link, and k alternates between neighbouring levels when the
    budget lies between them; when the link shrinks, k falls at once (never below
    min_channels) instead of frames being dropped
  * deadline: a frame is due one frame interval + `deadline_slack_s` after capture, so
    the cap shrinks by whatever the frame's age at the decision and the link's one-way
    delay take beyond the slack
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

    def frame_time(self, age_s: float) -> float:
        """Link time one frame may take: one frame interval, less what the deadline
        (interval + slack after capture) has already lost to the frame's age at this
        decision and to the link delay still ahead of it."""
        lost = min(max(age_s, 0.0), self.interval) + min(self.delay_s, self.interval)
        left = self.interval + self.cfg.deadline_slack_s - lost
        return min(self.interval, max(0.25 * self.interval, left))

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
        if math.isfinite(self._last_avail) and avail < 0.9 * self._last_avail:
            self.hold = cfg.up_hold_frames               # congestion: no rising for a while
        self._last_avail = avail
        frame_cap = avail * self.frame_time(age_s) / 8.0   # bytes: at most one frame interval of the link
        target_bytes = cfg.headroom * avail * self.interval / 8.0
        self.credit = min(self.credit + target_bytes, frame_cap)
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
        self.credit = max(0.0, self.credit - self.frame_bytes(sizes[:k_sent]))
        return Decision(k_sent, min(cfg.max_channels, self.k + 1), avail, target_bytes * 8 / self.interval, source)
