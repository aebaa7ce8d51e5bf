"""A coded frame across a network as a train of small samples (robot -> base station).

Library code (no rclpy; the message classes are passed in or come with the messages):
  * `split_frame`: a LatentChannels frame -> LatentChunk parts.  The first part holds
    chunk 0 alone (the most important channel, and the first car of the train); the
    other chunks are packed in order into parts of at most `part_bytes` (one UDP
    datagram on an Ethernet or Wi-Fi MTU with DDS's headers: no IP fragments, and a
    lost datagram costs its own channels, not the frame).  So every frame of two or
    more chunks crosses as at least two samples, and the receiver can time it.
  * `Reassembler`: the receiver's side.  Parts of one sequence are put back together
    in order; a frame is finished when all its parts are in, when a part of a later
    frame arrives (one path keeps order), or `timeout_s` after its last part (the
    rest was lost).  For each frame it gives a delivery report: bytes, link start and
    end, chunks sent and received, from the parts' arrival times (receiver's clock):

        each part's time on the link: its arrival minus when the link could start it, the
            later of the previous part's arrival and its own send time (DDS's source
            timestamp, sender's clock) + the train's smallest one-way delay (so the
            clocks' offset cancels): the bottleneck as a FIFO server
        rate       = bytes of parts 1..n-1 / their time on the link
        link_end   = arrival of the last part
        link_start = link_end - the frame's bytes / rate

    which is what a link emulator reports: bits / (link_end - link_start) is the rate the
    link carried the frame at (a packet train: the bottleneck spaces the parts; a sender
    that paused between two parts does not make the link look slower).  Without send
    times the parts' arrival spacing alone is used.  A train that crossed faster than the
    clocks resolve (`MIN_TRAIN_S`) gives a rate of its bytes over that time: a lower
    bound, the link is not the limit.  A frame of one part has no train of its own: the
    last train's rate stands in.  Scheduling on a busy computer only ever makes a train
    look slower, never faster: a train slower than the best of the last five is believed
    (within 2 s) only when its frame also queued (its last part's one-way delay above the 10-s
    minimum by `QUEUE_TRUST_S`), as a link slower than the stream makes it queue.  Bytes are the
    bitstream bytes the controller counts (`frame_bytes`), so the rate is in its units:
    what the link carries of the stream, its headers (DDS, UDP, IP) excluded.
"""
from __future__ import annotations

import math
from array import array
from collections import deque
from dataclasses import dataclass, field

from .codec.bitstream import CHUNK_ENTRY, HEADER

HEADER_BYTES, CHUNK_ENTRY_BYTES = HEADER.size, CHUNK_ENTRY.size   # a frame whose parts did not all come
MIN_TRAIN_S = 0.002         # a train's time on the link is taken as at least this (clock and scheduling jitter)
QUEUE_TRUST_S = 0.05        # a train slower than the recent ones is believed when its frame queued this long
SAMPLE_WINDOW_S = 2.0       # ... the best of the last five trains within this
DELAY_WINDOW_S = 10.0       # sliding minimum of the one-way delay (propagation and the clocks' offset)
PART_BYTES = 1200           # payload per part: one datagram on a 1500-byte MTU with DDS's ~200 bytes
# per-chunk fields of LatentChannels; every other field is copied into each part as it is
_PER_CHUNK = ("channel_indices", "chunk_lengths", "payload", "reference_deltas")


def _copy_frame_fields(src, dst) -> None:
    for name in src.get_fields_and_field_types():
        if name not in _PER_CHUNK:
            setattr(dst, name, getattr(src, name))


def part_groups(chunk_lengths, part_bytes: int = PART_BYTES) -> list[list[int]]:
    """Chunk positions per part: chunk 0 alone, then the others packed in order."""
    n = len(chunk_lengths)
    if n == 0:
        return [[]]
    groups, cur, size = [[0]], [], 0
    for i in range(1, n):
        if cur and size + chunk_lengths[i] > part_bytes:
            groups.append(cur)
            cur, size = [], 0
        cur.append(i)
        size += chunk_lengths[i]
    if cur:
        groups.append(cur)
    return groups


def split_frame(m, chunk_type, frame_bytes: int, part_bytes: int = PART_BYTES) -> list:
    """LatentChannels -> LatentChunk parts (each part a valid frame of its chunks)."""
    lens = list(m.chunk_lengths)
    idx = list(m.channel_indices)
    refs = list(m.reference_deltas)
    offs = [0]
    for n in lens:
        offs.append(offs[-1] + n)
    groups = part_groups(lens, part_bytes)
    parts = []
    for gi, g in enumerate(groups):
        c = chunk_type(index=gi, count=len(groups), frame_bytes=int(frame_bytes))
        _copy_frame_fields(m, c.part)
        c.part.channel_indices = array("B", [idx[i] for i in g])
        c.part.chunk_lengths = array("H", [lens[i] for i in g])
        c.part.payload = array("B", bytes(m.payload[offs[g[0]]:offs[g[-1] + 1]])) if g else array("B")
        if refs:
            c.part.reference_deltas = array("B", [refs[i] for i in g])
        parts.append(c)
    return parts


def join_parts(parts: list, frame_type):
    """The parts that arrived (LatentChunk, any order) -> one LatentChannels frame."""
    parts = sorted(parts, key=lambda c: c.index)
    out = frame_type()
    _copy_frame_fields(parts[0].part, out)
    idx, lens, refs, payload = [], [], [], bytearray()
    for c in parts:
        idx += list(c.part.channel_indices)
        lens += list(c.part.chunk_lengths)
        payload += bytes(c.part.payload)
        refs += list(c.part.reference_deltas) or [0] * len(c.part.channel_indices)
    out.channel_indices, out.chunk_lengths, out.payload = array("B", idx), array("H", lens), array("B", payload)
    if any(refs):
        out.reference_deltas = array("B", refs)
    return out


@dataclass
class Report:
    """One delivery report's fields (receiver's clock, seconds)."""
    sequence: int
    bytes: int
    link_start: float
    link_end: float
    channels_sent: int
    channels_received: int
    partial: bool
    stamp: object = None          # the frame's capture stamp, as it came


@dataclass
class _Frame:
    count: int
    frame_bytes: int
    parts: dict = field(default_factory=dict)      # index -> LatentChunk
    arrivals: dict = field(default_factory=dict)   # index -> arrival time
    sent: dict = field(default_factory=dict)       # index -> send time (sender's clock), or None
    progress_sent: bool = False


class Reassembler:
    """Parts in, whole frames and delivery reports out (see the module text)."""

    def __init__(self, timeout_s: float = 0.5):
        self.timeout_s = timeout_s
        self.frames: dict[int, _Frame] = {}
        self.rate = math.nan            # the last train's rate, bytes/s (frames of one part use it)
        self.last_end = -math.inf       # link end of the last frame reported
        self._samples: deque = deque(maxlen=5)   # (time, rate) of the last trains timed and believed
        self._delays: deque = deque()   # (arrival, one-way delay of part 0) for a sliding minimum
        self.finished: set = set()      # sequences already given out (late duplicates are ignored)
        self.stats = {"parts": 0, "frames": 0, "frames_incomplete": 0, "parts_lost": 0, "parts_late": 0}

    def add(self, c, arrival: float, sent: float | None = None) -> list:
        """A part arrived (at `arrival`, sent at `sent` on the sender's clock when known).
        Returns [(frame or None, Report)]: finished frames (with their final report) and
        progress reports, in order."""
        self.stats["parts"] += 1
        seq = c.part.sequence
        if seq in self.finished:
            self.stats["parts_late"] += 1
            return []
        out = []
        for s in [s for s in self.frames if _before(s, seq)]:   # one path keeps order: the rest is lost
            out += self._finish(s)
        f = self.frames.setdefault(seq, _Frame(c.count, c.frame_bytes))
        f.parts[c.index] = c
        f.arrivals[c.index] = arrival
        f.sent[c.index] = sent
        if len(f.parts) >= f.count:
            out += self._finish(seq)
        elif not f.progress_sent and f.count >= 3 and len(f.parts) >= 2 and 0 in f.parts and 1 in f.parts:
            rep = self._report(seq, f, partial=True)
            if rep is not None:
                f.progress_sent = True
                out.append((None, rep))
        return out

    def _recent_max(self, now: float) -> float:
        """The best train of the last five within SAMPLE_WINDOW_S (inf: none)."""
        recent = [r for t, r in self._samples if now - t <= SAMPLE_WINDOW_S]
        return max(recent) if recent else math.inf

    def _queued(self, f: _Frame, used: list[int], t_end: float) -> float | None:
        """How much longer than the shortest one-way delay seen lately the frame's last
        part took (None without send times): the queue in front of the link."""
        s_last = f.sent.get(used[-1])
        s0 = f.sent.get(used[0])
        if s_last is None or s0 is None:
            return None
        now = f.arrivals[used[0]]
        d = f.arrivals[used[0]] - s0
        while self._delays and self._delays[-1][1] >= d:
            self._delays.pop()
        self._delays.append((now, d))
        while now - self._delays[0][0] > DELAY_WINDOW_S:
            self._delays.popleft()
        return (t_end - s_last) - self._delays[0][1]

    def expire(self, now: float) -> list:
        """Frames whose missing parts are overdue: finished with what arrived."""
        out = []
        for s, f in list(self.frames.items()):
            if now - max(f.arrivals.values()) > self.timeout_s:
                out += self._finish(s)
        return out

    def _finish(self, seq: int) -> list:
        f = self.frames.pop(seq)
        self.finished.add(seq)
        if len(self.finished) > 4096:
            self.finished = {s for s in self.finished if not _before(s, seq - 2048)}
        self.stats["frames"] += 1
        if len(f.parts) < f.count:
            self.stats["frames_incomplete"] += 1
            self.stats["parts_lost"] += f.count - len(f.parts)
        rep = self._report(seq, f, partial=False)
        return [(f, rep)]

    def _report(self, seq: int, f: _Frame, partial: bool) -> Report | None:
        got = sorted(f.parts)
        used = [0, 1] if partial else got
        sizes = {i: sum(f.parts[i].part.chunk_lengths) for i in used}
        payload = sum(sum(c.part.chunk_lengths) for c in f.parts.values())
        complete = len(got) == f.count
        # the bitstream header and chunk table go with part 0 (exact when every part is in)
        header = f.frame_bytes - payload if complete else HEADER_BYTES + CHUNK_ENTRY_BYTES * _chunks_of(f)
        if 0 in sizes:
            sizes[0] += max(0, header)
        t0, t_end = f.arrivals[used[0]], f.arrivals[used[-1]]
        rate = self.rate
        if len(used) >= 2:
            busy = _train_time(f, used)
            rate = sum(sizes[i] for i in used[1:]) / max(MIN_TRAIN_S, busy)
            queued = self._queued(f, used, t_end)
            best = self._recent_max(t_end)
            if queued is not None and queued < QUEUE_TRUST_S and rate < best:
                # no queue grew, so the link was not the limit: a slow train is the two computers'
                # scheduling (it only ever lengthens times); the recent best train stands
                rate = best
            elif not partial and busy >= MIN_TRAIN_S:      # (a train too quick to time is a lower bound only)
                self._samples.append((t_end, rate))
            if not partial:
                self.rate = rate
        nbytes = f.frame_bytes if complete else sum(sizes.values())
        start = t0
        if math.isfinite(rate) and rate > 0:
            # the frame's time on the link at that rate, not before the link finished the last frame
            start = max(t_end - nbytes / rate, min(t0, self.last_end))
        if not partial:
            self.last_end = max(self.last_end, t_end)
        received = sum(len(f.parts[i].part.channel_indices) for i in used)
        return Report(seq, int(nbytes), start, t_end, _chunks_of(f), received, partial,
                      f.parts[got[0]].part.header.stamp)


def _train_time(f: _Frame, used: list[int]) -> float:
    """Time the link spent on parts used[1:] (see the module text)."""
    arr = [f.arrivals[i] for i in used]
    sent = [f.sent.get(i) for i in used]
    if any(s is None for s in sent):
        return arr[-1] - arr[0]
    d_min = min(a - s for a, s in zip(arr, sent))
    busy = 0.0
    for j in range(1, len(used)):
        busy += max(0.0, arr[j] - max(arr[j - 1], sent[j] + d_min))
    return busy


def _chunks_of(f: _Frame) -> int:
    """Chunks the frame was sent with: those that arrived, plus one per missing part at
    least (a part's chunk count is not known before it arrives)."""
    got = sum(len(c.part.channel_indices) for c in f.parts.values())
    return got + (f.count - len(f.parts))


def _before(a: int, b: int) -> bool:
    """Sequence a comes before b (uint32, wrapping)."""
    return a != b and ((b - a) % 2**32) < 2**31
