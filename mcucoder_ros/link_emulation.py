"""A bandwidth / loss / delay link (the rate estimator from its reports is control.py's).

Pure logic, shared by link_emulator_node and the ABR evaluation.
Trace CSV: header `t,bandwidth_bps,loss,delay_ms` (loss and delay optional), values
hold from their time until the next row (step-wise).
"""
from __future__ import annotations

import bisect
import csv
import math
import random
from dataclasses import dataclass
from pathlib import Path


@dataclass
class TracePoint:
    t: float
    bandwidth_bps: float
    loss: float = 0.0
    delay_ms: float = 0.0


class Trace:
    def __init__(self, points: list[TracePoint], name: str = "trace"):
        if not points:
            raise ValueError("a trace needs at least one row")
        self.points = sorted(points, key=lambda p: p.t)
        self.times = [p.t for p in self.points]     # for bisect: property tests run thousands of traces
        self.name = name

    @classmethod
    def load(cls, path) -> Trace:
        path = Path(path)
        try:
            with open(path, newline="") as f:
                reader = csv.DictReader(f)
                if not reader.fieldnames or not {"t", "bandwidth_bps"} <= set(reader.fieldnames):
                    raise ValueError(f"{path}: header must be t,bandwidth_bps[,loss][,delay_ms]")
                pts = [TracePoint(float(r["t"]), float(r["bandwidth_bps"]), float(r.get("loss") or 0.0),
                                  float(r.get("delay_ms") or 0.0)) for r in reader]
        except OSError as e:
            raise ValueError(f"cannot read trace {path}: {e.strerror}") from None
        for p in pts:
            if p.bandwidth_bps < 0 or not 0 <= p.loss <= 1 or p.delay_ms < 0:
                raise ValueError(f"{path}: invalid row at t={p.t}")
        return cls(pts, path.stem)

    @property
    def duration(self) -> float:
        return self.points[-1].t

    def at(self, t: float) -> TracePoint:
        return self.points[max(0, bisect.bisect_right(self.times, t) - 1)]

    def transmit_end(self, start: float, bits: float) -> float:
        """Time at which `bits` sent from `start` have crossed the link (step-wise rate)."""
        t, left = start, bits
        idx = max(0, bisect.bisect_right(self.times, t) - 1)
        while left > 1e-9:
            rate = self.points[idx].bandwidth_bps
            nxt = self.points[idx + 1].t if idx + 1 < len(self.points) else math.inf
            if rate > 0:
                dt = left / rate
                if t + dt <= nxt:
                    return t + dt
                left -= rate * (nxt - t)
            if nxt == math.inf:
                return math.inf
            t, idx = nxt, idx + 1
        return t

    def available_bits(self, t0: float, t1: float) -> float:
        total = 0.0
        for i, p in enumerate(self.points):
            a = max(t0, p.t)
            b = min(t1, self.points[i + 1].t if i + 1 < len(self.points) else t1)
            if b > a:
                total += p.bandwidth_bps * (b - a)
        return total


@dataclass
class Delivery:
    start: float          # when the link began sending the frame
    end: float            # when its last bit crossed the link
    delivered: float      # end + propagation delay
    kept: list            # indices of the chunks that survived loss
    first_end: float = math.nan   # when the first `first_bytes` crossed (a progress report's time)


def first_chunk_bytes(frame_bytes: int, chunk_lengths) -> int:
    """Bytes a frame's progress report covers: its header, chunk table and chunk 0, which
    cross first (0: a frame of one chunk, which has no progress report)."""
    lens = list(chunk_lengths)
    return frame_bytes - sum(lens) + lens[0] if len(lens) > 1 else 0


class LinkEmulator:
    """FIFO serialisation at the trace's bandwidth; each chunk lost with the trace's loss ratio."""

    def __init__(self, trace: Trace, seed: int = 0):
        self.trace = trace
        self.free_at = 0.0
        self.rng = random.Random(seed)
        self.sent_bits = 0.0

    def send(self, t: float, frame_bytes: int, n_chunks: int, first_bytes: int = 0) -> Delivery:
        start = max(t, self.free_at)
        end = self.trace.transmit_end(start, frame_bytes * 8)
        self.free_at = end
        self.sent_bits += frame_bytes * 8
        p = self.trace.at(start)
        kept = [c for c in range(n_chunks) if self.rng.random() >= p.loss]
        first = self.trace.transmit_end(start, first_bytes * 8) if 0 < first_bytes < frame_bytes else math.nan
        return Delivery(start, end, end + p.delay_ms / 1000, kept, first)


class ThrottledSerialProxy:
    """A loopback TCP proxy that throttles the device -> host direction of a serial
    socket (`socket://`) to the trace's bandwidth; host -> device passes untouched.
    Emulates a slow radio between a camera MCU and the robot's computer."""

    def __init__(self, trace: Trace, upstream: tuple[str, int], listen_port: int = 0, chunk: int = 64):
        import socket
        import threading

        self.trace, self.upstream, self.chunk = trace, upstream, chunk
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("127.0.0.1", listen_port))
        self.srv.listen(1)
        self.port = self.srv.getsockname()[1]
        self.bytes_down = 0
        self._stop = threading.Event()
        self._t0 = None
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"socket://127.0.0.1:{self.port}"

    def now(self) -> float:
        import time
        return 0.0 if self._t0 is None else time.monotonic() - self._t0

    def _serve(self):
        import socket
        import threading
        import time

        self.srv.settimeout(0.2)
        while not self._stop.is_set():
            try:
                host, _ = self.srv.accept()
            except (TimeoutError, OSError):
                continue
            try:
                # a small receive window, so the device feels the link's pace as a UART
                # would (the kernel's default buffers hold dozens of frames)
                dev = socket.socket()
                dev.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                dev.settimeout(5)
                dev.connect(self.upstream)
            except OSError:
                host.close()
                continue
            self._t0 = self._t0 or time.monotonic()

            def up(host=host, dev=dev):   # host -> device, unthrottled
                try:
                    while not self._stop.is_set():
                        data = host.recv(4096)
                        if not data:
                            break
                        dev.sendall(data)
                except OSError:
                    pass

            threading.Thread(target=up, daemon=True).start()
            free_at = self.now()
            dev.settimeout(0.2)
            try:
                while not self._stop.is_set():
                    try:
                        data = dev.recv(self.chunk)
                    except TimeoutError:
                        continue
                    if not data:
                        break
                    free_at = self.trace.transmit_end(max(free_at, self.now()), len(data) * 8)
                    delay = free_at - self.now()
                    if delay > 0:
                        time.sleep(delay)
                    host.sendall(data)
                    self.bytes_down += len(data)
            except OSError:
                pass
            finally:
                host.close()
                dev.close()

    def close(self):
        self._stop.set()
        self.srv.close()
        self.thread.join(timeout=2)
