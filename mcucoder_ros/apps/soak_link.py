"""`mcucoder-ros soak-link`: the sealed serial link under faults, for minutes.

The real firmware under QEMU streams as fast as QEMU runs it (its clip looped), through a
fault proxy on loopback, to a real mcu_bridge_node with the device key.  The proxy:
  * device -> host: corrupts bytes, drops and duplicates packets, replays earlier sealed
    packets, injects forged ones (random ciphertext and tag, valid framing);
  * host -> device: replays earlier sealed commands, injects forged ones;
  * every `--vanish-every` seconds closes the port and keeps it closed for
    `--vanish-for` seconds (the bridge sees the port vanish and come back).
It records frames published, faults injected, packets rejected by cause (bridge and
device), how long each return of the port took to bring frames back, and the process's
resident memory; checks that published sequences only grow (nothing replayed got
through) and that sampled frames are the host encoder's own (nothing forged got through).
"""
from __future__ import annotations

import json
import os
import random
import socket
import tempfile
import threading
import time
from pathlib import Path

from ..link import sealed
from ..link import serial_protocol as sp


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class FaultProxy:
    """Loopback TCP between QEMU's UART (upstream) and the bridge (a client of `port`): an
    attacker on the line.  Random faults at `rates` (per packet and kind); and, on demand,
    the handshake attacks of issue 29: drop the next packet of a type, inject bytes either
    way, replay what it recorded, and switch to another upstream (a device that reset).
    Everything the host wrote is recorded by packet type (`down_log`), so a test can say
    what the bridge never sent."""

    def __init__(self, upstream_port: int, seed: int, rates: dict | None = None):
        self.rng = random.Random(seed)
        self.rates = rates or dict.fromkeys(("drop", "corrupt", "duplicate", "replay", "forge"), 0.0)
        self.down_rates = {"replay": 0.2, "forge": 0.2} if rates else {"replay": 0.0, "forge": 0.0}
        self.up = self._connect(upstream_port)
        self.listener = None
        self.port = self._listen(0)
        self.client = None
        self.lock = threading.Lock()
        self.faults = dict.fromkeys(("corrupted", "dropped", "duplicated", "replayed_up", "forged_up",
                                     "replayed_down", "forged_down", "vanished"), 0)
        self.returns: list[float] = []
        self.recent_up: list[bytes] = []
        self.recent_down: list[bytes] = []
        self.down_log: list[tuple[float, int, bytes]] = []      # (time, packet type, packet bytes)
        self.up_log: list[tuple[float, int, bytes]] = []        # HELLOs and SESSION_OK-bearing packets only
        self.drop_down: dict[int, int] = {}                     # packet type -> how many of the next to drop
        self.stop = threading.Event()
        self.up_gen = 0                                         # bumped when the upstream changes

    @staticmethod
    def _connect(port):
        for _ in range(200):            # QEMU listens a moment after it starts
            try:
                return socket.create_connection(("127.0.0.1", port))
            except ConnectionRefusedError:
                time.sleep(0.05)
        raise RuntimeError(f"QEMU's UART did not open on 127.0.0.1:{port}")

    def _listen(self, port):
        ls = socket.socket()
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("127.0.0.1", port))
        ls.listen(1)
        ls.settimeout(0.1)
        self.listener = ls
        return ls.getsockname()[1]

    def start(self):
        for fn in (self._accept, self._pump_up, self._pump_down):
            threading.Thread(target=fn, daemon=True).start()

    def vanish(self, seconds: float):
        with self.lock:
            c, self.client = self.client, None
            ls, self.listener = self.listener, None
        for s in (c, ls):
            if s is not None:
                s.close()
        self.faults["vanished"] += 1
        time.sleep(seconds)
        self._listen(self.port)
        self.returns.append(time.monotonic())

    def switch_upstream(self, port: int):
        """The device was replaced (reset, fresh storage): talk to the new QEMU from now on."""
        new = self._connect(port)
        with self.lock:
            old, self.up = self.up, new
            self.up_gen += 1
        try:
            old.close()
        except OSError:
            pass

    def inject_up(self, data: bytes):
        self._send_client(data)

    def inject_down(self, data: bytes):
        with self.lock:
            up = self.up
        try:
            up.sendall(data)
        except OSError:
            pass

    def sent_down(self, ptype: int) -> list[bytes]:
        """The packets of this type the host wrote (parsed), in order."""
        return [raw for _, t, raw in self.down_log if t == ptype]

    def _accept(self):
        while not self.stop.is_set():
            ls = self.listener
            if ls is None or self.client is not None:
                time.sleep(0.02)
                continue
            try:
                c, _ = ls.accept()
            except (TimeoutError, OSError):
                continue
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.lock:
                self.client = c

    def _send_client(self, data: bytes):
        with self.lock:
            c = self.client
        if c is None:
            return                   # the port is gone: the device's bytes are lost, as on a real link
        try:
            c.sendall(data)
        except OSError:
            with self.lock:
                if self.client is c:
                    self.client = None

    def _forged(self, outer: int) -> bytes:
        body = struct_counter(self.rng) + bytes(self.rng.randrange(256) for _ in range(self.rng.randrange(17, 80)))
        return sp.encode_packet(outer, body)

    def _pump_up(self):
        buf, r = bytearray(), self.rates
        gen = -1
        while not self.stop.is_set():
            with self.lock:
                up = self.up
                if gen != self.up_gen:
                    gen, buf = self.up_gen, bytearray()
            try:
                up.settimeout(0.1)
                data = up.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                time.sleep(0.05)            # an upstream being replaced
                continue
            if not data:
                time.sleep(0.05)            # QEMU ended (its frames are done, or it was stopped)
                continue
            buf += data
            *packets, rest = bytes(buf).split(b"\x00")
            buf = bytearray(rest)
            out = bytearray()
            for p in packets:
                if not p:
                    continue
                pkt = p + b"\x00"
                x = self.rng.random()
                if x < r["drop"]:
                    self.faults["dropped"] += 1
                    continue
                if x < r["drop"] + r["corrupt"]:
                    q = bytearray(pkt)
                    q[self.rng.randrange(len(q) - 1)] ^= 1 << self.rng.randrange(8)
                    pkt = bytes(q)
                    self.faults["corrupted"] += 1
                elif x < r["drop"] + r["corrupt"] + r["duplicate"]:
                    pkt = pkt + pkt
                    self.faults["duplicated"] += 1
                out += pkt
                self.recent_up.append(p + b"\x00")
                del self.recent_up[:-400]
                if self.rng.random() < r["replay"] and len(self.recent_up) > 50:
                    out += self.rng.choice(self.recent_up[:-20])
                    self.faults["replayed_up"] += 1
                if self.rng.random() < r["forge"]:
                    out += self._forged(sealed.SEALED_UP)
                    self.faults["forged_up"] += 1
            self._send_client(bytes(out))

    def _pump_down(self):
        buf = bytearray()
        while not self.stop.is_set():
            with self.lock:
                c = self.client
            if c is None:
                time.sleep(0.02)
                continue
            try:
                c.settimeout(0.1)
                data = c.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                time.sleep(0.02)
                continue
            if not data:
                with self.lock:
                    if self.client is c:
                        self.client = None
                continue
            buf += data
            *packets, rest = bytes(buf).split(b"\x00")
            buf = bytearray(rest)
            out = bytearray()
            for p in packets:
                if not p:
                    continue
                raw = p + b"\x00"
                parsed = sp.StreamParser().feed(raw)
                ptype = parsed[0].type if parsed else -1
                self.down_log.append((time.monotonic(), ptype, raw))
                if self.drop_down.get(ptype, 0) > 0:
                    self.drop_down[ptype] -= 1
                    self.faults.setdefault(f"dropped_down_{ptype:#04x}", 0)
                    self.faults[f"dropped_down_{ptype:#04x}"] += 1
                    continue
                out += raw
                self.recent_down.append(raw)
                del self.recent_down[:-100]
            if out and self.rng.random() < self.down_rates["replay"] and len(self.recent_down) > 3:
                out += self.rng.choice(self.recent_down[:-1])
                self.faults["replayed_down"] += 1
            if out and self.rng.random() < self.down_rates["forge"]:
                out += self._forged(sealed.SEALED_DOWN)
                self.faults["forged_down"] += 1
            if out:
                self.inject_down(bytes(out))


def forged_hello(protocol: int, rng=random) -> bytes:
    """A HELLO anyone on the wire can send: protocol 1 (a device without a key, asking to be
    provisioned or downgraded), or 2 with a random nonce (a handshake of its own)."""
    h = sp.Hello(protocol, 0x0100, rng.randrange(2**32), 2, 44000, 900, 62000,
                 bytes(rng.randrange(256) for _ in range(16)) if protocol == 2 else b"")
    return sp.encode_packet(sp.HELLO, h.pack())


def struct_counter(rng) -> bytes:
    return rng.randrange(2**32).to_bytes(4, "little")


HANDSHAKE_FAULTS = ("drop_exchange", "forged_hello_2", "forged_hello_1", "replay_exchange", "device_reset",
                    "device_reset_drop_exchange")


def run(a) -> int:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter
    from rclpy.qos import qos_profile_sensor_data

    from ..codec.model import EncoderModel
    from ..evaluation import collect_frames
    from ..msg import LatentChannels
    from ..nodes.common import msg_to_frame
    from ..nodes.mcu_bridge_node import McuBridgeNode
    from ..qemu import QemuCamera
    from ..resources import data_path
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    a.input = a.input or str(data_path("clips/traffic.mp4"))
    work = Path(tempfile.mkdtemp(prefix="mcucoder-soak-"))
    key_file = work / "device.key"
    key = sealed.write_key_file(key_file)

    def new_device():
        """The device booting with fresh storage (its key kept): a fresh folder per launch."""
        c = QemuCamera(a.target, a.input, max_frames=a.clip_frames, link_key=key, stream_frames=2**31 - 1)
        return c, c.start()
    cam, qemu_url = new_device()
    rates = {"drop": a.fault_rate, "corrupt": a.fault_rate, "duplicate": a.fault_rate, "replay": a.fault_rate,
             "forge": a.fault_rate}
    proxy = FaultProxy(int(qemu_url.rsplit(":", 1)[1]), a.seed, rates)
    proxy.start()
    enc = EncoderModel.load()
    clip = [f for _, f in collect_frames([a.input], a.clip_frames)]
    full: dict[int, list] = {}              # the host encoder's chunks per clip frame (bounded)
    # what arrives is checked as it arrives: nothing kept per frame, so the process's memory
    # is the bridge's, not a growing record
    seen = {"frames": 0, "last_seq": -1, "not_increasing": 0, "checked": 0, "authentic": 0, "first_after": {},
            "last_frame": None, "after_budget_12": 0, "budget_5_after_12": 0, "budget_set_at": None,
            "reset_sessions": None}

    def on_latent(m):
        now = time.monotonic()
        seen["frames"] += 1
        sessions = bridge.link.sessions
        if seen["reset_sessions"] is not None and sessions > seen["reset_sessions"]:
            seen["last_seq"], seen["reset_sessions"] = -1, None      # the new device's frames count from 0
        if m.sequence <= seen["last_seq"]:
            seen["not_increasing"] += 1
        seen["last_seq"] = m.sequence
        seen["last_frame"] = now
        for i in range(len(proxy.returns)):
            seen["first_after"].setdefault(i, now)
        for f in faults:
            # frames again: any frame after the fault; after a device reset, one of the new device's
            # (a session proven after the fault), not one of the old device's still on its way
            if f["first_frame_s"] is None and now > f["t"] and (
                    not f["kind"].startswith("device_reset") or sessions > f["sessions_before"]):
                f["first_frame_s"] = now - f["t"]
        if seen["budget_set_at"] is not None and now > seen["budget_set_at"] + 1.0:
            # the budget is 12 from here on: a frame of channels 0..4 only would be a replayed SET_BUDGET(5)
            # obeyed (a partial frame of 12 would have to lose its 7 last chunks)
            seen["after_budget_12"] += 1
            seen["budget_5_after_12"] += bool(m.channel_indices) and max(m.channel_indices) < 5
        if m.sequence % 25 == 0:            # every channel that arrived is the host encoder's own
            f, i = msg_to_frame(m), m.sequence % len(clip)
            ref = full.setdefault(i, enc.encode(clip[i], 12).chunks)
            seen["checked"] += 1
            seen["authentic"] += all(ch == ref[c] for c, ch in zip(f.channel_indices, f.chunks))

    faults: list[dict] = []                 # handshake faults: kind, time, first frame after, sessions
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node("soak_probe", context=ctx)
    node.create_subscription(LatentChannels, "/soak/latent", on_latent, qos_profile_sensor_data)
    bridge = McuBridgeNode(context=ctx, namespace="/soak", parameter_overrides=[
        Parameter("port", value=f"socket://127.0.0.1:{proxy.port}"), Parameter("link_key_file", value=str(key_file)),
        Parameter("reconnect_max_s", value=0.2), Parameter("wait_for_subscriber", value=False),
        Parameter("provision_key", value=True)])           # must change nothing: the bridge never sends its key
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    ex.add_node(bridge)
    stop = threading.Event()
    spin = threading.Thread(target=lambda: [ex.spin_once(timeout_sec=0.05) for _ in iter(stop.is_set, True)],
                            daemon=True)
    spin.start()
    t0 = time.monotonic()
    samples, next_vanish, next_sample = [], t0 + a.vanish_every, t0
    next_fault = t0 + a.handshake_every
    session_times: list[float] = []        # when each session was proven
    sessions_before = 0
    device_status: list[tuple] = []         # each device's last STATUS before it was reset, and the last one's
    print(f"soak: {a.target} under QEMU, {a.minutes:g} min, faults at {a.fault_rate:.1%} per packet and kind, "
          f"the port closed for {a.vanish_for:g} s every {a.vanish_every:g} s, a handshake fault every "
          f"{a.handshake_every:g} s ({', '.join(HANDSHAKE_FAULTS)})", flush=True)

    def status_now():
        bridge.assembler.last_status = None
        bridge._command(sp.REQUEST_STATUS)
        t = time.monotonic()
        while bridge.assembler.last_status is None and time.monotonic() - t < 2.0:
            time.sleep(0.02)
        return bridge.assembler.last_status
    try:
        # a sealed SET_BUDGET(5), then 12: the attacker records both; a replay of the 5 obeyed would show
        while not bridge.link.confirmed and time.monotonic() - t0 < 30:
            time.sleep(0.05)
        bridge._on_budget(type("M", (), {"data": 5})())
        time.sleep(1.0)
        bridge._on_budget(type("M", (), {"data": 12})())
        seen["budget_set_at"] = time.monotonic()
        n_fault = 0
        while time.monotonic() - t0 < 60 * a.minutes:
            now = time.monotonic()
            if now >= next_sample:
                samples.append({"t_s": round(now - t0, 1), "frames": seen["frames"], "rss_mb": round(rss_mb(), 1)})
                print(f"  {samples[-1]['t_s']:6.0f} s  frames {seen['frames']:6d}  RSS {samples[-1]['rss_mb']:.1f} MB  "
                      f"sessions {bridge.link.sessions}  rejected {bridge.link.rejected}", flush=True)
                next_sample += 10
            if now >= next_vanish:
                proxy.vanish(a.vanish_for)
                next_vanish += a.vanish_every
            if now >= next_fault and proxy.client is not None:     # (not while the port is closed)
                kind = HANDSHAKE_FAULTS[n_fault % len(HANDSHAKE_FAULTS)]
                n_fault += 1
                next_fault += a.handshake_every
                old_exchanges = proxy.sent_down(sealed.KEY_EXCHANGE)
                old_commands = proxy.sent_down(sealed.SEALED_DOWN)[:20]
                f = {"kind": kind, "t": time.monotonic(), "t_s": round(time.monotonic() - t0, 1),
                     "first_frame_s": None, "sessions_before": bridge.link.sessions}
                if kind == "drop_exchange":             # the attacker asks for a HELLO and drops the exchange
                    proxy.drop_down[sealed.KEY_EXCHANGE] = 1
                    proxy.inject_down(sp.request_hello())
                elif kind == "forged_hello_2":
                    proxy.inject_up(forged_hello(2, proxy.rng))
                elif kind == "forged_hello_1":
                    proxy.inject_up(forged_hello(1, proxy.rng))
                elif kind == "replay_exchange":         # every exchange recorded, and old commands, to the device
                    proxy.inject_down(b"".join(old_exchanges) + b"".join(old_commands))
                else:                                   # the device resets, its storage with it
                    st = status_now()
                    if st is not None:
                        device_status.append(st)
                    old_cam = cam
                    cam, url = new_device()
                    if kind == "device_reset_drop_exchange":
                        proxy.drop_down[sealed.KEY_EXCHANGE] = 1
                    old_cam.stop()
                    f["t"] = time.monotonic()           # the old device is gone: from here to frames again
                    proxy.switch_upstream(int(url.rsplit(":", 1)[1]))
                    seen["reset_sessions"] = f["sessions_before"]
                    # the attacker replays the earlier connections' exchanges and commands at once
                    proxy.inject_down(b"".join(old_exchanges) + b"".join(old_commands))
                faults.append(f)
            if bridge.link.sessions != sessions_before:
                sessions_before = bridge.link.sessions
                session_times.append(time.monotonic())
            time.sleep(0.01)
        st = status_now()
        if st is not None:
            device_status.append(st)
    finally:
        stop.set()
        spin.join(2)
        proxy.stop.set()
        rejected = dict(bridge.link.rejected)
        diag = {**bridge.counters, **bridge.diagnostics()[2]}
        ex.remove_node(bridge)
        bridge.destroy_node()
        node.destroy_node()
        rclpy.shutdown(context=ctx)
        cam.stop()
    # resume: the first frame after each return of the port, and after each handshake fault
    first_frames = [seen["first_after"][i] - r if i in seen["first_after"] else None
                    for i, r in enumerate(proxy.returns)]
    for i, f in enumerate(faults):
        until = faults[i + 1]["t"] if i + 1 < len(faults) else float("inf")
        f["new_session_s"] = next((round(t - f["t"], 3) for t in session_times if f["t"] <= t < until), None)
        f["first_frame_s"] = round(f["first_frame_s"], 3) if f["first_frame_s"] is not None else None
    for f in faults:
        del f["t"]
    by_kind = {}
    for kind in HANDSHAKE_FAULTS:
        xs = [f["first_frame_s"] for f in faults if f["kind"] == kind]
        by_kind[kind] = {"n": len(xs), "frames_back_max_s": max((x for x in xs if x is not None), default=None),
                         "never_back": sum(x is None for x in xs)}
    statuses = [st for st in device_status if len(st) == 10]
    after_first_minute = [x for x in samples if x["t_s"] >= 60]
    written = b"".join(raw for _, _, raw in proxy.down_log)
    result = {
        "target": a.target, "minutes": a.minutes, "clip": a.input, "fault_rate_per_packet_and_kind": a.fault_rate,
        "frames_published": seen["frames"], "frames_per_s": round(seen["frames"] / (60 * a.minutes), 2),
        "faults_injected": proxy.faults, "rejected_by_bridge": rejected,
        "rejected_by_device": {k: sum(st[6 + i] for st in statuses)
                               for i, k in enumerate(("bad_tag", "replay", "unsealed", "malformed"))},
        "device_instances": sum(1 for f in faults if f["kind"].startswith("device_reset")) + 1,
        "bridge": {k: diag.get(k) for k in ("crc_errors", "framing_errors", "sessions", "key_exchanges", "port_lost",
                                            "open_failures", "handshake_retries", "partial_frames", "duplicates")},
        "port_returns": len(proxy.returns),
        "resume_s": {"first_frame": [round(r, 3) if r is not None else None for r in first_frames],
                     "max": round(max(r for r in first_frames if r is not None), 3) if any(first_frames) else None},
        "handshake_faults": by_kind,
        "handshake_fault_log": faults,
        "frames_back_within_3_s": all(f["first_frame_s"] is not None and f["first_frame_s"] <= 3.0 for f in faults),
        "provision_key_sent": bool(proxy.sent_down(sealed.PROVISION_KEY)) or key in written,
        "frames_after_budget_12": seen["after_budget_12"],
        "frames_of_budget_5_after_budget_12": seen["budget_5_after_12"],
        "sequences_not_increasing": seen["not_increasing"],
        "frames_checked_against_host_encoder": seen["checked"], "frames_authentic": seen["authentic"],
        "rss_mb": {"after_1_min": after_first_minute[0]["rss_mb"] if after_first_minute else None,
                   "end": samples[-1]["rss_mb"] if samples else None,
                   "growth_after_1_min": round(samples[-1]["rss_mb"] - after_first_minute[0]["rss_mb"], 1)
                   if after_first_minute else None},
        "samples": samples,
    }
    text = json.dumps(result, indent=2)
    if a.json:
        Path(a.json).write_text(text + "\n")
    print(text)
    return 0
