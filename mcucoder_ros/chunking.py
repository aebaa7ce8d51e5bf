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

        a part is timed when it was ready (its send time, DDS's source timestamp on the
            sender's clock, + the smallest one-way delay of the last 10 s, so the clocks'
            offset cancels) `WAIT_S` before the part ahead of it came out, and that part
            itself came out `WAIT_S` late: the bottleneck was busy with it (a FIFO
            server) or its token bucket empty (a shaper), so the part left one service
            time after it, whatever the bottleneck is
        rate       = bytes of those parts / their arrival spacing
        link_end   = arrival of the last part
        link_start = arrival of the first part (its one-way delay: the queue in front)
        rate_bps   = the rate (NaN when the frame was no train to time)

    The rate is that of the parts queued one behind the other (a packet train: the
    bottleneck spaces them; a sender that paused between two parts does not make the link
    look slower).  The first parts of a train are left out: a shaper with a token bucket
    (tbf, a cellular or Wi-Fi scheduler) lets the first bytes after an idle spell through
    at once, and counting them made a 200 kbit/s link look like 1 Mbit/s.  A train too
    short to have two parts queued one behind the other (often two parts, always one)
    gives no rate: its report says NaN.
    Without send times the parts' arrival spacing alone is used.  A train that crossed
    faster than the clocks resolve (`MIN_TRAIN_S`) gives a rate of its bytes over that
    time: a lower bound, the link is not the limit.  A late receive thread on a busy
    computer moves one arrival, which shortens one spacing and lengthens the next: the
    rate over the whole run of timed parts keeps only the ends' error.  Bytes are the
    bitstream bytes, and `part_overhead` per part (the network receiver: PART_OVERHEAD_BYTES),
    the units of a controller that counts the same per part (packet_overhead_bytes): so a
    frame of many small parts is not planned as if its headers were free.
"""
from __future__ import annotations

import math
from array import array
from collections import deque
from dataclasses import dataclass, field

from .codec.bitstream import CHUNK_ENTRY, HEADER

HEADER_BYTES, CHUNK_ENTRY_BYTES = HEADER.size, CHUNK_ENTRY.size   # a frame whose parts did not all come
MIN_TRAIN_S = 0.002         # a train's time on the link is taken as at least this (clock and scheduling jitter)
WAIT_S = 0.001              # a part waited behind the one before it by at least this (else: no rate sample)
DELAY_WINDOW_S = 10.0       # sliding minimum of the one-way delay (propagation and the clocks' offset)
PART_BYTES = 1200           # payload per part: one datagram on a 1500-byte MTU with DDS's ~200 bytes
# a part's bytes on the wire beside its chunks: the LatentChunk fields (~75), RTPS (Fast DDS:
# header, timestamp, destination, DATA), UDP, IP and Ethernet headers; measured 255 per part
# (tbf's byte and packet counters, Fast DDS over UDPv4, two-namespace benchmark)
PART_OVERHEAD_BYTES = 250
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


def parts_by_k(chunk_lengths, part_bytes: int = PART_BYTES) -> list[int]:
    """How many parts a frame of the first k chunks goes in, for k = 0, 1, ... (as
    part_groups packs them; a frame of no chunks is one part)."""
    out, parts, size = [1], 0, 0
    for i, n in enumerate(chunk_lengths):
        if i <= 1 or size + n > part_bytes:     # chunk 0 alone; a new part when this one is full
            parts, size = parts + 1, 0
        size += n
        out.append(parts)
    return out


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
    rate_bps: float = math.nan    # the rate timed on this frame's parts (NaN: too short a train)


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

    def __init__(self, timeout_s: float = 0.5, part_overhead: float = 0.0):
        self.timeout_s = timeout_s
        self.part_overhead = part_overhead  # counted per timed part: the rate is then the wire's
        self.frames: dict[int, _Frame] = {}
        self.rate = math.nan            # the last train's rate, bytes/s (for diagnostics)
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

    def _note_delay(self, f: _Frame, used: list[int]) -> None:
        """The sliding minimum of part 0's one-way delay (propagation and the clocks' offset)."""
        s0 = f.sent.get(used[0])
        if s0 is None:
            return
        now = f.arrivals[used[0]]
        d = now - s0
        while self._delays and self._delays[-1][1] >= d:
            self._delays.pop()
        self._delays.append((now, d))
        while now - self._delays[0][0] > DELAY_WINDOW_S:
            self._delays.popleft()

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
        self._note_delay(f, used)
        base = self._delays[0][1] if self._delays else math.inf
        timed, busy = _train_time(f, used, base, self.part_overhead) if len(used) >= 2 else (0, 0.0)
        sample = math.nan
        if timed:
            rate = timed / max(MIN_TRAIN_S, busy)
            if not partial:
                self.rate = rate
            sample = rate * 8
        nbytes = f.frame_bytes if complete else sum(sizes.values())
        start = t0
        received = sum(len(f.parts[i].part.channel_indices) for i in used)
        return Report(seq, int(nbytes), start, t_end, _chunks_of(f), received, partial,
                      f.parts[got[0]].part.header.stamp, sample)


def _train_time(f: _Frame, used: list[int], base_delay: float = math.inf,
                part_overhead: float = 0.0) -> tuple[float, float]:
    """(bytes, seconds) of the parts of used[1:] that waited behind a part that waited too,
    and their arrival spacing: the link's time for them (see the module text).
    base_delay: the smallest one-way delay seen lately (arrival - send time, so with the
    clocks' offset in it), when it is below this train's own.  part_overhead: header bytes
    counted with each part's chunks."""
    arr = [f.arrivals[i] for i in used]
    sent = [f.sent.get(i) for i in used]
    size = [sum(f.parts[i].part.chunk_lengths) for i in used]
    if any(s is None for s in sent):
        return sum(size[1:]), arr[-1] - arr[0]
    d_min = min(base_delay, min(a - s for a, s in zip(arr, sent)))
    timed, busy = 0, 0.0
    for j in range(1, len(used)):
        # part j was ready before part j-1 came out, and part j-1 itself came out late (the
        # bottleneck was busy, or its token bucket empty): j left one service time after it
        behind = arr[j - 1] - (sent[j] + d_min) >= WAIT_S
        if behind and arr[j - 1] - sent[j - 1] - d_min >= WAIT_S:
            timed += size[j] + part_overhead
            busy += max(0.0, arr[j] - arr[j - 1])
    return timed, busy


def _chunks_of(f: _Frame) -> int:
    """Chunks the frame was sent with: those that arrived, plus one per missing part at
    least (a part's chunk count is not known before it arrives)."""
    got = sum(len(c.part.channel_indices) for c in f.parts.values())
    return got + (f.count - len(f.parts))


def _before(a: int, b: int) -> bool:
    """Sequence a comes before b (uint32, wrapping)."""
    return a != b and ((b - a) % 2**32) < 2**31
