"""Channel-budget control: pick k per frame so the stream fits the available bandwidth.

Pure logic (no ROS).  Documented in docs/bitrate-control.md.
  * available bandwidth: the latest fresh LinkQuality report (0 = an outage), else the
    rate estimated from the receiver's delivery reports (DeliveryRateEstimator), else
    unknown (all channels pass)
  * where the link is: a virtual queue at the available bandwidth; with delivery
    reports, the frames in flight replayed from when the link really finished the
    last reported one, so a rate that was too high shows as queued time at the next
    decision
  * the level k: the largest prefix of channels whose bytes (smoothed chunk sizes plus
    bitstream overhead) fit headroom x available x the frame interval, so a steady link
    gives a steady k; where the next level still fits the whole link, k alternates
    between the two slowly (a byte bucket; at least dither_dwell_s at each), so the
    link is used near `headroom` without quality pumping
  * a byte credit refills by one interval of the link per frame and is capped at what
    the frame's deadline allows: k never exceeds what the credit carries (deadlines)
  * deadline: a frame is due one frame interval + `deadline_slack_s` after capture,
    and is planned to end `deadline_margin_s` earlier (the hop to the link and jitter);
    its cap is the link time left after its age at the decision, the link time still
    owed to earlier frames and the link's one-way delay.  A frame may so take a
    little more than one interval when the one before it took less
  * a frame that would miss its deadline by more than `skip_late_s` even with
    min_channels is not sent at all (channels = 0), nor is any during an outage: a
    reported bandwidth of 0, or a stall the delivery reports show, when at most one
    frame stays in flight as a probe.  Sending it would only make the next frames late
  * k rises by at most one channel per frame, and not for `up_hold_frames` frames
    after the bandwidth fell, so quality does not flap after congestion
  * liveness: after probe_after_s with nothing sent (a link judged too slow for any
    frame, or a stall) a frame of min_channels goes as a probe; a probe delivered in
    time lifts the estimate to at least its rate (docs/bitrate-control.md)
  * the budget sent upstream is k + 1: one channel of look-ahead, so that rising
    decisions use real chunk sizes
  * the resolution ladder (LadderController): the picture scale requested upstream
    (1, 1/2, 1/4) is that of the rung of most expected quality (the model's ladder
    table) that fits the planned rate, with a 2-s hysteresis
"""
from __future__ import annotations

import math
from collections import OrderedDict, deque
from dataclasses import dataclass, field

from .chunking import PART_BYTES, parts_by_k
from .codec.bitstream import CHUNK_ENTRY, HEADER
from .codec.geometry import LATENT_CHANNELS

BACK_TO_BACK_S = 0.005      # two frames this close on the link were queued one behind the other
PRIOR_CHUNK_BYTES = 420.0   # typical chunk of the shipped model at 224x224 (before any frame is seen)


@dataclass
class FrameInFlight:
    """A frame sent and not yet fully reported, as the rate estimator follows it."""
    bits: float
    sent: float                     # sender clock
    first_bits: float = math.nan    # what its progress report covers (its first chunk); NaN: none
    progressed: bool = False        # its progress report came
    probe: bool = False             # the controller sent it as a probe (liveness)
    straddled: tuple | None = None  # (bits, link_end) of a progress report that came late (a stall or dip)


@dataclass
class EstimatorConfig:
    up_smoothing: float = 0.3       # EWMA weight of a rate sample above the estimate
    down_smoothing: float = 0.7     # ... and of one below it (a slower link is believed fast)
    base_window_s: float = 30.0     # minimum filter of the one-way delay: propagation + clock offset
    overuse_queue_s: float = 0.05   # queueing delay beyond this, growing over reports = rate too high
    overuse_factor: float = 0.9     # on overuse: the estimate drops to this x the delivered rate
    delay_quantile: float = 0.95    # the link delay planned for: this quantile of the last 50 reports
    overdue_margin_s: float = 0.03  # a report later than predicted by this bounds the rate
    stall_after_s: float = 0.25     # a report overdue by this much = the link stalled
    report_timeout_s: float = 2.0   # a frame without a report after this is forgotten
    untimed_growth: float = 1.03    # estimate x this per frame that crossed untimed, whole, with no queue
    probe_growth: float = 2.0       # ... and per such probe frame (liveness after an outage)


class DeliveryRateEstimator:
    """The link's rate, queueing delay and loss, from the receiver's delivery reports.

    For links that report nothing about themselves (a serial radio, a Wi-Fi hop, a
    modem).  Every report says when the link began and finished one frame (receiver's
    clock) and how many of its chunks arrived; the sender knows when it sent it.
      * rate: each frame leaves as one burst, so bits / (link_end - link_start) is the
        rate of the link while it carried the frame, whatever share of the link we
        use: every frame is a probe (a packet train), no need to overshoot to find
        out that the link grew.  Samples below the estimate weigh 0.7, above it 0.3.
        Over a real network the receiver times the train itself (`rate_bps`,
        docs/ros.md); a frame too short to time gives no sample, and one that crossed
        whole with no queue lets the estimate grow by `untimed_growth` (a probe:
        `probe_growth`), so a link that grew, or came back after an outage, is found
        with small frames too
      * queueing delay: link_start - sent, minus its minimum over `base_window_s` (that
        minimum holds the propagation and the clocks' offset, as GCC's and BBR's
        minimum filters do).  Growing past `overuse_queue_s` over consecutive reports
        means the estimate is above the link: it drops to 0.9 x the delivered rate
        (over the last frames the link carried back to back, not over idle time)
      * stall: a frame whose report is overdue by `stall_after_s` (predicted from the
        estimate and the report delay) means nothing is crossing: `stalled` until
        the next report.  The frame that straddled the stall is no rate sample; the
        estimate restarts at the rate it had before the stall
      * loss: share of chunks lost, smoothed; not a congestion signal here (the queue
        is the sender's own, so congestion shows as delay first; radio loss does not
        mean the link is slower)
    """

    def __init__(self, cfg: EstimatorConfig | None = None):
        self.cfg = cfg or EstimatorConfig()
        self.bps = math.nan
        self.loss = 0.0
        self.queue_s = 0.0
        self.report_delay_s = math.nan  # link end -> report here (sender clock), its delay_quantile
        self.report_delay_median_s = math.nan   # ... and its median
        # reports timed by the receiver itself (rate_bps not 0: a network receiver): their
        # link_end is the frame's arrival where it is shown, no link delay comes after it
        self.at_receiver = False
        self._report_delays: deque = deque(maxlen=50)
        self.stalled = False            # a report overdue by stall_after_s: nothing crosses
        self.overdue = False            # a report overdue by overdue_margin_s: the link is slower
        self.bound_bps = math.inf       # the rate an overdue report leaves possible
        self._restart_after = None      # after an overdue report: the next frame's sample is taken whole
        # frame key (a sequence; (camera, sequence) on a shared link) -> FrameInFlight, in sending order
        self.inflight: OrderedDict[object, FrameInFlight] = OrderedDict()
        self.anchor = -math.inf         # sender-clock time the link finished the last reported frame
        self.planned_free_at = -math.inf  # the controllers' own virtual queue, for links without reports
        self.reports = 0
        self.last_report_at = -math.inf  # when any report (a progress report too) last came
        self.first_sent = None          # when the first frame went (start-up: waiting for a report)
        self.last_sent = None           # when the last frame went (liveness: a probe after a silence)
        self.next_is_probe = False      # the controller marks its probe; on_sent records it
        self._delays: deque = deque()   # (now, link_start - sent) for the minimum filter
        self._prev_queue = 0.0
        self._delivered: deque = deque(maxlen=8)   # (bits, link_start, link_end) of the last reports

    def on_sent(self, sequence: int, bits: float, now: float, first_bits: float = math.nan) -> None:
        """first_bits: what the frame's progress report will cover (its first chunk with the
        header and chunk table: `first_chunk_bytes`); NaN where it will have none."""
        self.inflight[sequence] = FrameInFlight(bits, now, first_bits if 0 < first_bits < bits else math.nan,
                                                probe=self.next_is_probe)
        self.next_is_probe = False
        if self.first_sent is None:
            self.first_sent = now
        self.last_sent = now

    def on_report(self, sequence: int, bits: float, link_start: float, link_end: float,
                  channels_sent: int, channels_received: int, now: float, partial: bool = False,
                  rate_bps: float = 0.0) -> None:
        """A delivery report (partial: a progress report, the frame's first chunk crossed).
        rate_bps: the rate the receiver timed on the frame's packets (NaN: none, the frame
        gives no rate sample; 0: bits / (link_end - link_start), a link emulator's report)."""
        cfg = self.cfg
        self.at_receiver = self.at_receiver or rate_bps != 0     # (NaN != 0 too)
        self.last_report_at = now
        frame = self.inflight.get(sequence)
        if frame is not None and partial:
            frame.progressed = True
        elif frame is not None:
            while self.inflight:    # reports come in link order: a frame sent before without one lost it
                if self.inflight.popitem(last=False)[0] == sequence:
                    break
            self.reports += 1
            if channels_sent > 0:
                self.loss += 0.2 * ((1 - channels_received / channels_sent) - self.loss)
        busy = link_end - link_start
        if frame is not None:
            sent = frame.sent
            w = link_start - sent
            # sliding minimum over base_window_s (a monotonic deque: O(1) per report)
            while self._delays and self._delays[-1][1] >= w:
                self._delays.pop()
            self._delays.append((now, w))
            while now - self._delays[0][0] > cfg.base_window_s:
                self._delays.popleft()
            self.queue_s = w - self._delays[0][1]
            if not partial:
                end = sent + self.queue_s + max(0.0, busy)
                self.anchor = max(self.anchor, end)
                self._report_delays.append(max(0.0, now - end))
                ordered = sorted(self._report_delays)
                self.report_delay_s = ordered[min(len(ordered) - 1, int(cfg.delay_quantile * len(ordered)))]
                self.report_delay_median_s = ordered[len(ordered) // 2]
        was_overdue = self.overdue
        self.stalled = self.overdue = False
        self.bound_bps = math.inf
        probe = not partial and frame is not None and frame.probe
        if busy <= 0 and rate_bps == 0:     # (a frame of one packet over a network: rate_bps NaN)
            return
        straddled = None if partial or frame is None else frame.straddled
        if partial and was_overdue and rate_bps == 0 and frame is not None:
            # the first chunk of a frame that was on the link through a stall or a dip: its
            # time holds the dip, so its rate is far below the link's now; the rest of the
            # frame, which crosses after it, is not
            frame.straddled = (bits, link_end)
        if straddled is not None:
            if link_end > straddled[1] and bits > straddled[0]:
                # that rest: the link's rate now, taken whole (the frame was queued, the link
                # never idled); it alone enters the delivered run of overuse detection
                bits, link_start = bits - straddled[0], straddled[1]
                self.bps, self._restart_after = bits / (link_end - link_start), None
                self._delivered.append((bits, link_start, link_end))
        elif not math.isnan(rate_bps):
            if not partial:
                self._delivered.append((bits, link_start, link_end))
            self._sample(rate_bps if rate_bps > 0 else bits / busy, sequence, was_overdue, probe)
        elif not partial and math.isnan(self.bps) and frame is not None and channels_received == channels_sent:
            # the first reports, none of them timed: the link carried the frame within the
            # time to its report, a first figure that growth and the first timed frame correct
            self.bps = bits / max(1e-3, now - frame.sent)
        elif not partial and math.isfinite(self.bps) and not was_overdue \
                and channels_received == channels_sent and self.queue_s < 0.5 * cfg.overuse_queue_s:
            # the receiver could not time this frame (too short a train), but it crossed
            # whole, on time and without a queue: the link kept up, so the estimate grows
            # (fast after a probe, slowly otherwise) until a timed frame or a queue says how far
            self.bps *= cfg.probe_growth if probe else cfg.untimed_growth
        if not partial and self.queue_s > cfg.overuse_queue_s and self.queue_s > self._prev_queue \
                and len(self._delivered) >= 2:
            # the delivered rate over the last stretch the link spent on our frames back to
            # back (queued): over idle time between frames it would be our sending rate
            run = [self._delivered[-1]]
            for prev in reversed(list(self._delivered)[:-1]):
                if run[0][1] > prev[2] + BACK_TO_BACK_S:
                    break
                run.insert(0, prev)
            bits_sum = sum(b for b, _, _ in run)
            span = run[-1][2] - run[0][1]
            if span > 0:
                self.bps = min(self.bps, cfg.overuse_factor * bits_sum / span)
        self._prev_queue = self.queue_s

    def _sample(self, sample: float, sequence, was_overdue: bool, probe: bool) -> None:
        cfg = self.cfg
        if math.isnan(self.bps) or (self._restart_after is not None and sequence != self._restart_after):
            self.bps, self._restart_after = sample, None
        elif was_overdue:
            # the link was slower than the estimate, or it stalled while this frame was on
            # it: believe the lower rate now, and the next frame's first sample whatever it is
            self.bps, self._restart_after = min(self.bps, sample), sequence
        elif self._restart_after is None:
            a = cfg.down_smoothing if sample < self.bps else cfg.up_smoothing
            self.bps += a * (sample - self.bps)
        if probe and not was_overdue:
            # a probe crossed in time: the link carries at least its rate, whatever the
            # estimate fell to before (never kept below what the probes show)
            self.bps = max(self.bps, sample)

    def tick(self, now: float) -> None:
        """Forget frames whose reports never came; bound the rate by a report overdue."""
        cfg = self.cfg
        for s in [s for s, f in self.inflight.items() if now - f.sent > cfg.report_timeout_s]:
            del self.inflight[s]
        if not self.inflight or not self.reports or not math.isfinite(self.bps) or self.bps <= 0:
            return              # a stall lasts until a report comes (the probe's, or a late one)
        frame = next(iter(self.inflight.values()))
        start = max(self.anchor, frame.sent)
        on_link = now - start - (0.0 if math.isnan(self.report_delay_s) else self.report_delay_s)
        # its first report is the progress report where it has one, due once its first chunk
        # has crossed: an outage shows a chunk's time after it began, not a whole frame's
        bits = frame.first_bits if math.isfinite(frame.first_bits) and not frame.progressed else frame.bits
        if on_link > bits / self.bps + cfg.overdue_margin_s:
            # no report yet: the link carried less than `bits` in `on_link` seconds
            self.overdue = True
            self.bound_bps = min(self.bound_bps, bits / on_link)
        if on_link > bits / self.bps + cfg.stall_after_s:
            self.stalled = True

    def rate(self) -> float:
        """The estimate, bounded while a report is overdue."""
        return min(self.bps, self.bound_bps)

    def link_free_at(self, rate_bps: float) -> float:
        """When the link finishes the frames in flight, at this rate (sender clock)."""
        f = self.anchor
        for frame in self.inflight.values():
            f = max(f, frame.sent) + frame.bits / rate_bps
        return f


@dataclass
class ControllerConfig:
    headroom: float = 0.95          # average share of the available bandwidth we plan to use
    up_hold_frames: int = 5         # frames without rising after the bandwidth fell
    min_channels: int = 1
    max_channels: int = LATENT_CHANNELS
    size_smoothing: float = 0.3     # EWMA weight of a new chunk-size observation
    link_stale_s: float = 2.0       # LinkQuality older than this is ignored
    default_interval_s: float = 1 / 15
    deadline_slack_s: float = 0.05  # a frame is due one frame interval + this after capture
    deadline_margin_s: float = 0.01  # link time left unplanned before each deadline (hop to the link, jitter)
    skip_late_s: float = 0.0       # a frame later than this even at min_channels is not sent
    startup_s: float = 1.0          # min_channels until the first delivery report; after this only probes
    probe_after_s: float = 0.5      # nothing sent for this long (and 2 frame intervals): a probe frame
    probe_intervals: float = 2.0
    up_dwell_s: float = 0.0         # k rises to the sustainable level's last step only after this long there
    up_margin: float = 0.95         # ... a level is sustainable when it fits this share of the planned rate
    dither_dwell_s: float = 1.0     # between two levels, at least this long at each (no quality pumping)
    # a link that carries frames as packets (the network sender's parts): each costs this many
    # bytes of headers beside its payload of at most packet_payload_bytes (0: not counted)
    packet_overhead_bytes: float = 0.0
    packet_payload_bytes: int = 0


@dataclass
class Decision:
    channels: int                   # k forwarded for this frame (0: not sent)
    budget: int                     # k requested upstream
    available_bps: float            # NaN when unknown
    target_bps: float
    source: str                     # link_quality, delivery, default; "+stalled" during a stall


@dataclass
class BitrateController:
    cfg: ControllerConfig = field(default_factory=ControllerConfig)
    estimator: DeliveryRateEstimator = field(default_factory=DeliveryRateEstimator)

    def __post_init__(self):
        self.chunk_est = [PRIOR_CHUNK_BYTES] * LATENT_CHANNELS
        self.k = self.cfg.max_channels
        self.hold = 0
        self.credit = 0.0
        self._last_avail = math.nan
        self.link_bps = math.nan
        self.link_t = -math.inf
        self.link_delay_s = math.nan    # one-way delay from LinkQuality (RTT / 2)
        self.interval = self.cfg.default_interval_s
        self._last_stamp = None
        self._seen = 0                  # channels whose sizes were ever seen (the rest: estimated)
        self._probe_backoff = 1.0       # probe gap multiplier while probes go unanswered in a stall
        self._reports_at_probe = -1
        self._stalled_before = False    # the last decision was in a stall: a fall after it is no congestion
        self._last_switch = -math.inf   # when k last changed (hysteresis)
        self._goal_since = math.inf     # since when the level the link sustains has been above k
        self.bucket = 0.0               # bytes the level below the rate left unused (slow dither up)
        self._bucket_cap = 1.0
        # False where no one sends delivery reports (a link with no feedback): no startup
        # phase waits for them then
        self.expect_reports = True

    # -- inputs ----------------------------------------------------------------------
    def on_link_quality(self, bandwidth_bps: float, now: float, rtt_s: float = math.nan) -> None:
        if math.isfinite(bandwidth_bps) and bandwidth_bps >= 0:      # 0: the link reports an outage
            self.link_bps, self.link_t = bandwidth_bps, now
        if math.isfinite(rtt_s) and rtt_s >= 0:
            self.link_delay_s = rtt_s / 2

    def on_delivery_report(self, sequence: int, bits: float, link_start: float, link_end: float,
                           channels_sent: int, channels_received: int, now: float, partial: bool = False,
                           rate_bps: float = 0.0) -> None:
        self.estimator.on_report(sequence, bits, link_start, link_end, channels_sent, channels_received, now,
                                 partial, rate_bps)

    def on_sent(self, sequence: int, bits: float, now: float, first_bits: float = math.nan) -> None:
        self.estimator.on_sent(sequence, bits, now, first_bits)

    @property
    def delay_s(self) -> float:
        """One-way link delay: LinkQuality's RTT / 2, else link end -> delivery report (none
        where the receiver times the frames itself: its link end is the arrival)."""
        if math.isfinite(self.link_delay_s):
            return self.link_delay_s
        if self.estimator.at_receiver:
            return 0.0
        d = self.estimator.report_delay_s
        return d if math.isfinite(d) else 0.0

    @property
    def typical_delay_s(self) -> float:
        """The link delay a frame most likely meets (the skip rule's): LinkQuality's RTT / 2,
        else the median of link end -> delivery report."""
        if math.isfinite(self.link_delay_s):
            return self.link_delay_s
        if self.estimator.at_receiver:
            return 0.0
        d = self.estimator.report_delay_median_s
        return d if math.isfinite(d) else 0.0

    def available(self, now: float) -> tuple[float, str]:
        est = self.estimator
        est.tick(now)
        if math.isfinite(self.link_bps) and now - self.link_t <= self.cfg.link_stale_s:
            avail, source = self.link_bps, "link_quality"
        elif math.isfinite(est.bps):
            avail, source = est.rate(), "delivery"
        elif self.expect_reports:       # reports will say; until then small frames (then probes)
            return math.nan, "startup"
        else:
            return math.nan, "default"
        return avail, source + ("+stalled" if est.stalled else "")

    # -- per frame ---------------------------------------------------------------------
    @staticmethod
    def stream_bytes(chunk_bytes) -> float:
        """A frame's bytes in the bitstream: header, chunk table, chunks."""
        return HEADER.size + sum(CHUNK_ENTRY.size + b for b in chunk_bytes)

    def frame_bytes(self, chunk_bytes) -> float:
        """What a frame of these chunks costs the link: its bitstream bytes, and the headers
        of the packets it goes in (packet_overhead_bytes each) where those are counted."""
        return self.frame_bytes_by_k(chunk_bytes)[-1]

    def _due(self) -> float:
        return self.interval + max(0.0, self.cfg.deadline_slack_s - self.cfg.deadline_margin_s)

    def frame_time(self, age_s: float, wait_s: float = 0.0) -> float:
        """Link time one frame may take: what its deadline (interval + slack after
        capture, less the margin for what happens after this decision) leaves after the
        frame's age at this decision, the link time still owed to frames forwarded
        before it, and the link delay ahead of it; at least a quarter interval, so k
        never collapses for one late frame."""
        lost = sum(max(x, 0.0) for x in (age_s, wait_s, self.delay_s))
        due = self._due()
        return min(due, max(0.25 * self.interval, due - lost))

    def probe_due(self, now: float) -> bool:
        """Liveness: nothing has gone on the link for probe_after_s (and two frame
        intervals): whatever the estimate says, a frame of min_channels goes as a probe.
        A link judged too slow for any frame would otherwise never be measured again.
        While frames sit unanswered in a stall the gap doubles with each probe, up to
        report_timeout_s: on a link that queues, probes sent into an outage are link time
        the first frames after it must wait for."""
        est = self.estimator
        if est.last_sent is None:
            return False
        if not (est.stalled and est.inflight):
            self._probe_backoff = 1.0
        elif est.reports != self._reports_at_probe:
            # a new stall with frames in flight: their reports come when the link is back,
            # so the first probe waits twice as long (it would only queue behind them)
            self._probe_backoff = 2.0
            self._reports_at_probe = est.reports
        gap = max(self.cfg.probe_after_s, self.cfg.probe_intervals * self.interval)
        if est.inflight and not est.stalled and now - est.last_report_at < gap:
            # frames still in flight whose reports are coming (one came within the gap): the
            # link is carrying them, and they will show its rate; a probe would only queue
            return False
        gap = min(gap * self._probe_backoff, max(gap, est.cfg.report_timeout_s))
        return now - est.last_sent >= gap

    def _probe(self, present: int, avail: float, source: str, now: float) -> Decision:
        cfg = self.cfg
        self.k = cfg.min_channels
        self._last_switch = now
        self.estimator.next_is_probe = True
        if self._reports_at_probe == self.estimator.reports:
            self._probe_backoff *= 2.0          # the last probe is still unanswered
        self._reports_at_probe = self.estimator.reports
        sent = self.frame_bytes(self.chunk_est[:min(self.k, present)])
        if math.isfinite(avail) and avail > 0:
            self.estimator.planned_free_at = max(now, self.estimator.planned_free_at) + 8.0 * sent / avail
        return Decision(min(self.k, present), min(cfg.max_channels, self.k + 1), avail, math.nan, source + "+probe")

    def frame_bytes_by_k(self, chunk_bytes) -> list[float]:
        """frame_bytes(chunk_bytes[:k]) for k = 0, 1, ..."""
        out = [float(HEADER.size)]
        for b in chunk_bytes:
            out.append(out[-1] + CHUNK_ENTRY.size + b)
        if self.cfg.packet_overhead_bytes:
            parts = parts_by_k(chunk_bytes, self.cfg.packet_payload_bytes or PART_BYTES)
            out = [b + self.cfg.packet_overhead_bytes * n for b, n in zip(out, parts)]
        return out

    def decide(self, chunk_lengths: list[int], stamp_s: float, now: float, age_s: float = 0.0,
               share_bps: float | None = None) -> Decision:
        """share_bps: this camera's share of a link shared with others (SharedLinkController);
        the credit refills at it, while deadlines and queueing are the whole link's."""
        cfg = self.cfg
        if self._last_stamp is not None and 0 < stamp_s - self._last_stamp < 5.0:
            self.interval += 0.2 * (stamp_s - self._last_stamp - self.interval)
        self._last_stamp = stamp_s
        for c, n in enumerate(chunk_lengths):
            self.chunk_est[c] += cfg.size_smoothing * (n - self.chunk_est[c])
            self._seen = max(self._seen, c + 1)
        for c in range(self._seen, len(self.chunk_est)):   # never seen: as the last seen (sorted by importance)
            if self._seen:
                self.chunk_est[c] = self.chunk_est[self._seen - 1]
        avail, source = self.available(now)
        present = len(chunk_lengths)
        if source == "startup":     # small frames until the first delivery report gives a rate
            self.k = cfg.min_channels
            est = self.estimator
            if est.first_sent is not None and now - est.first_sent > cfg.startup_s:
                # still no report: the link may not carry even these (or the receiver has not
                # matched us yet, and a flood would keep its discovery from crossing): probes only
                if self.probe_due(now):
                    return self._probe(present, avail, source, now)
                return Decision(0, self.k + 1, avail, math.nan, source)
            return Decision(min(self.k, present), self.k + 1, avail, math.nan, source)
        if not math.isfinite(avail):
            self.k = cfg.max_channels
            return Decision(min(self.k, present), self.k, avail, math.nan, source)
        budget = min(cfg.max_channels, self.k + 1)
        rate = cfg.headroom * avail if share_bps is None else min(share_bps, avail)
        target_bytes = rate * self.interval / 8.0
        sizes = list(chunk_lengths) + self.chunk_est[present:]
        est = self.estimator
        reported_outage = avail <= 0 and source.startswith("link_quality")
        if reported_outage or (est.stalled and est.inflight):
            # outage: nothing would arrive; during a stall one probe at a time, and a new
            # one when the last has gone unanswered for the probe interval
            if not reported_outage and self.probe_due(now):
                return self._probe(present, avail, source, now)
            return Decision(0, budget, avail, 0.0, source)
        fell = math.isfinite(self._last_avail) and avail < 0.9 * self._last_avail
        stalled_before, self._stalled_before = self._stalled_before, est.stalled
        if fell and not (stalled_before or est.stalled):
            self.hold = cfg.up_hold_frames               # congestion: no rising for a while
        self._last_avail = avail
        # bytes this frame may take: what its deadline leaves, after the link time still
        # owed to earlier frames (re-anchored by the delivery reports)
        free_at = est.link_free_at(avail) if est.reports else est.planned_free_at
        wait = max(0.0, free_at - now)
        min_bytes = self.frame_bytes(sizes[:cfg.min_channels])
        # skipped only when even min_channels would most likely be late (the typical delay;
        # k is planned for the delay's tail, but a frame the tail might make late is still
        # worth more sent than skipped)
        late = max(0.0, age_s) + wait + 8.0 * min_bytes / avail + self.typical_delay_s \
            - (self._due() + cfg.deadline_margin_s)
        if late > cfg.skip_late_s and not est.stalled:
            if self.probe_due(now):
                return self._probe(present, avail, source, now)
            return Decision(0, budget, avail, target_bytes * 8 / self.interval, source)
        frame_cap = avail * self.frame_time(age_s, wait) / 8.0
        # the credit keeps every frame within its deadline (a frame of up to one interval of
        # the link, more when the one before left link time over); the average is kept at
        # `headroom` by the level rule below.  On a shared link it refills at the camera's share
        refill = target_bytes if share_bps is not None else avail * self.interval / 8.0
        self.credit = min(self.credit + refill, frame_cap)
        if fell:    # credit saved at the old rate buys no deadline slack at the new one
            self.credit = min(self.credit, avail * self.interval / 8.0)
            self.bucket = 0.0
        if share_bps is not None and self.credit < min_bytes and not est.stalled:
            # a shared link whose share for this camera is below its minimum: fewer
            # frames (evenly, as the credit grows), each still on time, not late ones
            if self.probe_due(now):
                return self._probe(present, avail, source, now)
            return Decision(0, budget, avail, target_bytes * 8 / self.interval, source)
        by_k = self.frame_bytes_by_k(sizes[:cfg.max_channels])
        k_fit = cfg.min_channels
        for k in range(cfg.max_channels, cfg.min_channels - 1, -1):
            if by_k[k] <= self.credit:
                k_fit = k
                break
        k_goal = min(self._level(rate, avail, now), k_fit)
        # rise by one channel per frame, not after a fall (hold), and the last step to the
        # goal only after it held up_dwell_s (a level the link only just sustains)
        if k_goal > self.k:
            k_up = self.k
            if self.hold == 0:
                settled = now - max(self._goal_since, self._last_switch) >= cfg.up_dwell_s - 1e-9
                if k_goal >= self.k + 2 or settled:
                    k_up = self.k + 1
            k_goal = k_up
        self.hold = max(0, self.hold - 1)
        k_new = max(cfg.min_channels, min(k_goal, cfg.max_channels))
        if est.stalled:         # nothing in flight during a stall: one small probe frame
            k_new = cfg.min_channels
            est.next_is_probe = True
        if k_new != self.k:
            self._last_switch = now
        self.k = k_new
        k_sent = min(self.k, present)
        sent = self.frame_bytes(sizes[:k_sent])
        self.credit = max(0.0, self.credit - sent)
        self.bucket = max(-self._bucket_cap, min(self._bucket_cap, self.bucket + target_bytes - sent))
        est.planned_free_at = max(now, est.planned_free_at) + 8.0 * sent / avail
        return Decision(k_sent, min(cfg.max_channels, self.k + 1), avail, target_bytes * 8 / self.interval, source)

    def _level(self, rate_bps: float, avail_bps: float, now: float) -> int:
        """The level k the link sustains at `rate_bps` (headroom x the available rate, or the
        camera's share): the largest k whose frame, at the smoothed chunk sizes, fits it with
        up_margin to spare (content noise is no reason to switch).  Where the next level up
        still fits one interval of the whole link, k alternates slowly between the two: up
        once the bytes the lower level leaves unused (`bucket`) pay for dither_dwell_s at
        the upper one, down when they are spent, at least dither_dwell_s at each.  So the
        link is used at `headroom` on average with at most one switch per dither_dwell_s,
        where a per-frame choice made k alternate every frame (quality pumping)."""
        cfg = self.cfg
        by_k = self.frame_bytes_by_k(self.chunk_est[:cfg.max_channels])
        per_frame = rate_bps * self.interval / 8.0
        k_sust = max([k for k in range(1, len(by_k)) if by_k[k] <= cfg.up_margin * per_frame],
                     default=cfg.min_channels)
        goal = k_sust
        dwell_frames = cfg.dither_dwell_s / self.interval
        self._bucket_cap = max(1.0, 1.5 * dwell_frames * per_frame * (1 - cfg.up_margin))
        if cfg.min_channels <= k_sust < cfg.max_channels and by_k[k_sust + 1] <= avail_bps * self.interval / 8.0:
            deficit = by_k[k_sust + 1] - per_frame          # bytes a frame one level up costs over the rate
            self._bucket_cap = max(self._bucket_cap, 1.5 * dwell_frames * deficit)
            dwelt = now - self._last_switch >= cfg.dither_dwell_s - 1e-9
            if self.k == k_sust + 1:
                goal = k_sust + 1 if (self.bucket > 0 or not dwelt) else k_sust
            elif self.k == k_sust and dwelt and self.bucket >= dwell_frames * deficit:
                goal = k_sust + 1
        if goal <= self.k:
            self._goal_since = math.inf
        else:
            self._goal_since = min(self._goal_since, now)
        return goal


@dataclass
class LadderDecision(Decision):
    scale_shift: int = 0            # the picture scale requested upstream (0: the camera's size)
    rung: str = ""                  # the rung the ladder aims at, e.g. "1/2 k=6"


class LadderController(BitrateController):
    """The resolution ladder (docs/bitrate-control.md, "The resolution ladder"): the
    channels of each frame are chosen as BitrateController chooses them, with the chunk
    sizes of the frame's own scale; the scale requested upstream is the one of the rung
    of most expected quality (the model's ladder table, at the camera's size) whose
    frame fits the rate the level rule plans with.  Chunk sizes of a scale not seen for
    a while are predicted from the seen one by the table's ratio of bytes per channel.
    The scale changes at most once per scale_dwell_s, to a scale the goal held for that
    long; at once only where the present scale cannot carry even min_channels."""

    def __init__(self, table: dict, cfg: ControllerConfig | None = None,
                 estimator: DeliveryRateEstimator | None = None, scale_dwell_s: float = 2.0,
                 shifts: tuple[int, ...] | None = None, scale_margin: float = 0.02):
        super().__init__(cfg or ControllerConfig(), estimator or DeliveryRateEstimator())
        self.scale_dwell_s = scale_dwell_s
        self.scale_margin = scale_margin
        tshifts = [int(math.log2(sc)) for sc in table["scales"]]
        self.shifts = tuple(s for s in tshifts if shifts is None or s in shifts)
        self.quality = {s: list(q) for s, q in zip(tshifts, table["ms_ssim"])}
        # bytes per channel relative to scale 0's, from the table (its bpp are per camera pixel)
        per_channel = {}
        for s, b in zip(tshifts, table["bpp"]):
            per_channel[s] = [max(1e-6, b[0])] + [max(1e-6, b[c] - b[c - 1]) for c in range(1, len(b))]
        self.ratio = {s: [per_channel[s][c] / per_channel[0][c] for c in range(LATENT_CHANNELS)]
                      for s in self.shifts}
        self._est = dict.fromkeys(self.shifts)          # smoothed chunk sizes per scale (None: not seen)
        self._seen_at = dict.fromkeys(self.shifts, -math.inf)
        self._seen_by = dict.fromkeys(self.shifts, 0)
        self.scale = 0                      # requested upstream
        self.frame_scale = 0                # of the last frame decided on
        self._scale_switch = -math.inf
        self._goal_scale, self._goal_scale_since = 0, math.inf
        self.goal_rung = ""
        self._age: dict = {}                # per scale: smoothed age of its frames at decision

    def estimates(self, shift: int) -> list[float]:
        """Chunk sizes expected at a scale: its own smoothed sizes if seen in the last
        10 s, else the most recently seen scale's, times the table's ratio."""
        own = self._est.get(shift)
        if own is not None and self.estimator.last_sent is not None and \
                self._seen_at[shift] >= self._seen_at[self.frame_scale] - 10.0:
            return list(own)
        src = max(self._seen_at, key=self._seen_at.get)
        base = self._est.get(src)
        if base is None:
            return [PRIOR_CHUNK_BYTES * self.ratio[shift][c] for c in range(LATENT_CHANNELS)]
        return [base[c] * self.ratio[shift][c] / self.ratio[src][c] for c in range(LATENT_CHANNELS)]

    def age_of(self, shift: int) -> float:
        """How old a frame of this scale is when it is decided on (capture, coding, transfer
        to here): its own smoothed figure, else the nearest seen scale's scaled by the area
        (the source's coding time grows with the pixels); 0 when no frame told."""
        if shift in self._age:
            return self._age[shift]
        if not self._age:
            return 0.0
        near = min(self._age, key=lambda s: abs(s - shift))
        return self._age[near] * 4.0 ** (near - shift)

    def frame_caps(self, avail: float) -> dict:
        """Bytes a frame of each scale may take: the rate the level rule plans with, and no
        more than the deadline leaves the link after the scale's age (at a camera's size the
        source's coding alone can take most of a frame interval; a smaller picture is
        coded sooner)."""
        rate, due = self._rate_bytes(avail), self._due() - self.delay_s
        return {s: min(rate, avail * max(0.0, due - self.age_of(s)) / 8.0) for s in self.shifts}

    def best_rung(self, per_frame_bytes) -> tuple[int, int]:
        """(scale shift, k) of the most expected quality whose frame fits per_frame_bytes
        (one figure, or one per scale: `frame_caps`),
        a smaller picture only where it is expected better by scale_margin (the table is
        an average over photos; on other content the larger picture may be worth more,
        and perception nodes want the pixels); the cheapest rung when none fits."""
        best = {}           # per scale: (quality, k) of its best fitting rung
        cheapest = None
        for s in self.shifts:
            by_k = self.frame_bytes_by_k(self.estimates(s))
            cap = per_frame_bytes[s] if isinstance(per_frame_bytes, dict) else per_frame_bytes
            for k in range(self.cfg.min_channels, self.cfg.max_channels + 1):
                q = self.quality[s][k - 1]
                if cheapest is None or by_k[k] < cheapest[0]:
                    cheapest = (by_k[k], s, k)
                if by_k[k] <= cap and (s not in best or q > best[s][0]):
                    best[s] = (q, k)
        if not best:
            return cheapest[1], cheapest[2]
        top = max(q for q, _ in best.values())
        s = min(s for s, (q, _) in best.items() if q >= top - self.scale_margin)
        return s, best[s][1]

    def decide(self, chunk_lengths: list[int], stamp_s: float, now: float, age_s: float = 0.0,
               share_bps: float | None = None, scale_shift: int = 0) -> LadderDecision:
        s_f = scale_shift if scale_shift in self._est else 0
        if s_f != self.frame_scale and self._est.get(s_f) is None:
            # the first frame at this scale: start from the predicted sizes, at the k the
            # ladder planned for it (not one channel at a time from the old scale's k)
            self._est[s_f] = self.estimates(s_f)
            self._seen_by[s_f] = 0
        elif self._est.get(s_f) is None:
            self._est[s_f] = [PRIOR_CHUNK_BYTES * self.ratio[s_f][c] for c in range(LATENT_CHANNELS)]
        if s_f != self.frame_scale:
            goal_k = self._goal_k(s_f, now)
            if goal_k:
                self.k = goal_k
                self._last_switch = now
        self.frame_scale = s_f
        if age_s > 0:
            a = self._age.get(s_f)
            self._age[s_f] = age_s if a is None else a + 0.3 * (age_s - a)
        self.chunk_est, self._seen = self._est[s_f], self._seen_by[s_f]
        dec = super().decide(chunk_lengths, stamp_s, now, age_s, share_bps)
        self._est[s_f], self._seen_by[s_f], self._seen_at[s_f] = self.chunk_est, self._seen, now
        self._choose_scale(dec, now)
        # while the source moves to another scale, the next frames' k is unknown: ask for all
        budget = dec.budget if self.scale == s_f else self.cfg.max_channels
        return LadderDecision(dec.channels, budget, dec.available_bps, dec.target_bps, dec.source,
                              self.scale, self.goal_rung)

    def _rate_bytes(self, avail: float) -> float:
        return self.cfg.up_margin * self.cfg.headroom * avail * self.interval / 8.0

    def _goal_k(self, shift: int, now: float) -> int:
        avail, _ = self.available(now)
        if not math.isfinite(avail) or avail <= 0:
            return 0
        caps = self.frame_caps(avail)
        s, k = self.best_rung(caps)
        if s == shift:
            return k
        by_k = self.frame_bytes_by_k(self.estimates(shift))
        return max([k for k in range(1, len(by_k)) if by_k[k] <= caps.get(shift, self._rate_bytes(avail))],
                   default=self.cfg.min_channels)

    def _choose_scale(self, dec: Decision, now: float) -> None:
        avail = dec.available_bps
        if not math.isfinite(avail) or avail <= 0 or "probe" in dec.source or "startup" in dec.source:
            return          # no rate to plan with (outage, probing, startup): keep the scale
        caps = self.frame_caps(avail)
        s_goal, k_goal = self.best_rung(caps)
        self.goal_rung = f"1/{1 << s_goal} k={k_goal}" if s_goal else f"k={k_goal}"
        if s_goal != self._goal_scale:
            self._goal_scale, self._goal_scale_since = s_goal, now
        if s_goal == self.scale:
            return
        cur_min = self.frame_bytes_by_k(self.estimates(self.scale))[self.cfg.min_channels]
        forced = s_goal > self.scale and cur_min > caps.get(self.scale, self._rate_bytes(avail)) / self.cfg.up_margin
        settled = now - self._goal_scale_since >= self.scale_dwell_s - 1e-9 and \
            now - self._scale_switch >= self.scale_dwell_s - 1e-9
        if forced or settled:
            self.scale, self._scale_switch = s_goal, now


def channel_gains(quality_by_k: dict) -> list[float]:
    """Quality each channel adds, from a model's MS-SSIM at some k (export.json's
    val_ms_ssim): gain[c] = q(c + 1) - q(c), with q(0) = 0 and q interpolated linearly
    in log k between the measured k (diminishing returns within each stretch too, as
    tail-drop training orders the channels)."""
    pts = sorted((int(k), float(v)) for k, v in quality_by_k.items())

    def q(k):
        if k <= 0:
            return 0.0
        if k <= pts[0][0]:
            return pts[0][1] * math.log1p(k) / math.log1p(pts[0][0])
        for (k0, q0), (k1, q1) in zip(pts, pts[1:]):
            if k <= k1:
                return q0 + (q1 - q0) * math.log(k / k0) / math.log(k1 / k0)
        return pts[-1][1]
    return [max(1e-6, q(c + 1) - q(c)) for c in range(LATENT_CHANNELS)]


@dataclass
class CameraSpec:
    """One camera on a shared link: its weight and bounds of k."""
    name: str
    weight: float = 1.0
    min_channels: int = 1
    max_channels: int = LATENT_CHANNELS


def allocate(budget_bps: float, cameras: list[dict]) -> dict[str, float]:
    """Split a link's bits/s between cameras.  Each camera: name, weight, min_channels,
    max_channels, fps, sizes (bytes per channel), gains (quality per channel).

    Every camera first gets its min_channels (when the link cannot carry all of them at
    their frame rates, it is split by weight among the minimums, so each camera sends
    fewer frames and none goes dark); then, one channel at a time, the next channel of
    the camera where it buys the most weighted quality per bit (weight x gain / bits per second of that
    channel); a channel that does not fit is passed over for cheaper ones, and what is
    left at the end goes to the best of those, so that its k alternates.  Like WebRTC's
    bitrate allocator (minimums first, the rest by priority), with the priority being
    what a channel buys, not a fixed share."""
    shares = {c["name"]: 0.0 for c in cameras}
    min_cost = {c["name"]: BitrateController.stream_bytes(c["sizes"][:c["min_channels"]]) * 8 * c["fps"]
                for c in cameras}
    if sum(min_cost.values()) > budget_bps:
        return _share_the_minimums(budget_bps, cameras, min_cost)
    k = {c["name"]: c["min_channels"] for c in cameras}
    shares.update(min_cost)
    left = budget_bps - sum(min_cost.values())
    open_ = list(cameras)
    passed = []
    while open_:
        def value(c):
            i = k[c["name"]]
            return c["weight"] * c["gains"][i] / ((CHUNK_ENTRY.size + c["sizes"][i]) * 8 * c["fps"])
        open_ = [c for c in open_ if k[c["name"]] < c["max_channels"]]
        if not open_:
            break
        best = max(open_, key=lambda c: (value(c), -k[c["name"]]))     # ties: the camera with fewer channels
        i = k[best["name"]]
        cost = (CHUNK_ENTRY.size + best["sizes"][i]) * 8 * best["fps"]
        if cost <= left:
            k[best["name"]] += 1
            shares[best["name"]] += cost
            left -= cost
        else:
            passed.append((value(best), best["name"]))
            open_.remove(best)
    if passed and left > 0:
        shares[max(passed)[1]] += left
    return shares


def _share_the_minimums(budget_bps: float, cameras: list[dict], min_cost: dict[str, float]) -> dict[str, float]:
    """A link too slow for every camera's minimum at its frame rate: every camera keeps
    its minimum k at a lower frame rate, the link split by weight (water-filling: a
    camera whose minimum costs less than its weighted part gets just that, the rest is
    split again), rather than some cameras going dark."""
    shares, left, todo = {}, budget_bps, list(cameras)
    while todo:
        wsum = sum(c["weight"] for c in todo)
        capped = [c for c in todo if min_cost[c["name"]] <= left * c["weight"] / wsum]
        if not capped:
            for c in todo:
                shares[c["name"]] = left * c["weight"] / wsum
            break
        for c in capped:
            shares[c["name"]] = min_cost[c["name"]]
            left -= min_cost[c["name"]]
            todo.remove(c)
    return shares


class SharedLinkController:
    """One link, several cameras: one rate estimate and one queue for the link, one
    BitrateController per camera (its own k, credit, frame interval, chunk sizes,
    deadlines), and the link's bits split between them by `allocate` at every
    decision.  strategy "shared" (the rule), "equal" (the same share each) or
    "independent" (each camera plans as if it had the link alone: what separate
    pipelines on one link do)."""

    def __init__(self, cameras: list[CameraSpec], gains: list[float], cfg: ControllerConfig | None = None,
                 strategy: str = "shared", camera_stale_s: float = 1.0):
        if strategy not in ("shared", "equal", "independent"):
            raise ValueError(f"unknown sharing strategy {strategy!r}")
        self.cfg = cfg or ControllerConfig()
        self.gains, self.strategy, self.camera_stale_s = list(gains), strategy, camera_stale_s
        self.estimator = DeliveryRateEstimator()
        self.specs: dict[str, CameraSpec] = {}
        self.ctrls: dict[str, BitrateController] = {}
        self.last_seen: dict[str, float] = {}
        self.shares: dict[str, float] = {}
        for c in cameras:
            self.add_camera(c)

    def add_camera(self, spec: CameraSpec) -> None:
        from dataclasses import replace
        if spec.min_channels > spec.max_channels:
            raise ValueError(f"camera {spec.name}: min_channels must not exceed max_channels")
        cfg = replace(self.cfg, min_channels=spec.min_channels, max_channels=spec.max_channels)
        est = DeliveryRateEstimator() if self.strategy == "independent" else self.estimator
        self.specs[spec.name] = spec
        self.ctrls[spec.name] = BitrateController(cfg, est)

    def active(self, now: float) -> list[str]:
        """Cameras that sent a frame within camera_stale_s (a camera that stops gives its share back)."""
        return [n for n, t in self.last_seen.items() if now - t <= max(self.camera_stale_s,
                                                                          3 * self.ctrls[n].interval)]

    # -- inputs: the link's ---------------------------------------------------------------
    def on_link_quality(self, bandwidth_bps: float, now: float, rtt_s: float = math.nan) -> None:
        for c in self.ctrls.values():
            c.on_link_quality(bandwidth_bps, now, rtt_s)

    def on_delivery_report(self, camera: str, sequence: int, *args, **kw) -> None:
        c = self.ctrls.get(camera)
        if c is not None:
            c.estimator.on_report((camera, sequence), *args, **kw)

    def on_sent(self, camera: str, sequence: int, bits: float, now: float, first_bits: float = math.nan) -> None:
        self.ctrls[camera].estimator.on_sent((camera, sequence), bits, now, first_bits)

    def decide(self, camera: str, chunk_lengths: list[int], stamp_s: float, now: float,
               age_s: float = 0.0) -> Decision:
        if camera not in self.ctrls:
            self.add_camera(CameraSpec(camera, min_channels=self.cfg.min_channels,
                                       max_channels=self.cfg.max_channels))
        self.last_seen[camera] = now
        ctrl = self.ctrls[camera]
        share = None
        if self.strategy != "independent":
            avail, _ = ctrl.available(now)
            if math.isfinite(avail):
                self.shares = self._split(avail, now)
                share = self.shares.get(camera, 0.0)
        return ctrl.decide(chunk_lengths, stamp_s, now, age_s, share_bps=share)

    def _split(self, avail: float, now: float) -> dict[str, float]:
        names = self.active(now)
        budget = self.cfg.headroom * avail
        if self.strategy == "equal":
            return {n: budget / len(names) for n in names}
        cams = [{"name": n, "weight": self.specs[n].weight, "min_channels": self.specs[n].min_channels,
                 "max_channels": self.specs[n].max_channels, "fps": 1.0 / self.ctrls[n].interval,
                 "sizes": self.ctrls[n].chunk_est, "gains": self.gains} for n in names]
        return allocate(budget, cams)


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
    not cut for it: a frame that goes keeps the quality the link allows.

    Several cameras into one decoder: `share_fps` (set by the caller from
    `share_frame_rate`) replaces the report as this camera's part of the receiver.
    A source that itself skips frames it was asked not to encode (encoder_node's
    `frame_rate_limit`) leaves gaps in its sequence numbers: the source rate and the
    credit count the frames it captured, not only those that came."""

    def __init__(self, margin: float = 0.95, stale_s: float = 3.0):
        self.margin, self.stale_s = margin, stale_s
        self.receiver_fps, self._report_t = math.nan, -math.inf
        self.source_interval, self._last_stamp, self._last_seq = math.nan, None, None
        self.share_fps = math.nan
        self.credit = 1.0

    def on_receiver_fps(self, fps: float, now: float) -> None:
        if fps > 0 and math.isfinite(fps):
            self.receiver_fps, self._report_t = fps, now

    def fresh(self, now: float) -> bool:
        return now - self._report_t <= self.stale_s and math.isfinite(self.receiver_fps)

    @property
    def source_fps(self) -> float:
        return 1.0 / self.source_interval if self.source_interval > 0 else math.nan

    def forward_fps(self, now: float) -> float:
        """The frame rate to forward: the source's, or the receiver's capacity x margin if lower."""
        src = self.source_fps
        if not self.fresh(now):
            return src                                   # no (fresh) report: do not hold back
        cap = self.share_fps if math.isfinite(self.share_fps) else self.receiver_fps * self.margin
        return cap if not math.isfinite(src) or cap < src else src

    def admit(self, stamp_s: float, now: float, seq: int | None = None) -> bool:
        """Called for every frame that comes, in order: forward it (True) or skip it.
        seq: the source's frame number (gaps: frames the source skipped itself)."""
        frames = 1
        if seq is not None and self._last_seq is not None and 0 < seq - self._last_seq <= 1000:
            frames = seq - self._last_seq
        self._last_seq = seq
        if self._last_stamp is not None and stamp_s > self._last_stamp:
            dt = (stamp_s - self._last_stamp) / frames
            self.source_interval = dt if math.isnan(self.source_interval) else \
                self.source_interval + 0.2 * (dt - self.source_interval)
        self._last_stamp = stamp_s
        src, fwd = self.source_fps, self.forward_fps(now)
        if not (math.isfinite(src) and math.isfinite(fwd)) or fwd >= src:
            self.credit = 1.0
            return True
        self.credit += frames * fwd / src
        admit = self.credit >= 1.0 - 1e-9
        if admit:
            self.credit -= 1.0
        self.credit = min(self.credit, 1.0)     # capped: skipped frames are not made up in bursts
        return admit


def share_frame_rate(capacity_fps: float, source_fps: list[float], weights: list[float]) -> list[float]:
    """Several cameras into one decoder of `capacity_fps` frames/s in all: each camera's
    frame rate, weighted max-min fair (water-filling): a camera that needs less than its
    weighted share keeps its own rate, the others split the rest by weight.  NaN where
    the capacity is unknown; a camera of unknown rate counts as needing its share."""
    n = len(source_fps)
    if not (math.isfinite(capacity_fps) and capacity_fps > 0) or n == 0:
        return [math.nan] * n
    need = [s if math.isfinite(s) and s > 0 else math.inf for s in source_fps]
    w = [max(1e-6, x) for x in weights]
    out = [math.nan] * n
    left, todo = capacity_fps, set(range(n))
    while todo:
        level = left / sum(w[i] for i in todo)          # frames/s per unit of weight
        below = [i for i in todo if need[i] <= level * w[i]]
        if not below:
            for i in todo:
                out[i] = level * w[i]
            break
        for i in below:
            out[i] = need[i]
            left -= need[i]
            todo.discard(i)
    return out
