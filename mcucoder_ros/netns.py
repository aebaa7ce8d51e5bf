"""Two hosts on one machine: a robot and a base station in two network namespaces.

    robot namespace                                   base namespace
    <prefix>r: veth <prefix>r 192.0.2.1/24  <====>  veth <prefix>b 192.0.2.2/24
               root qdisc tbf (the bottleneck, robot -> base; changed while running)

Addresses come from the documentation range 192.0.2.0/24 (RFC 5737); nothing leaves
the two namespaces, which `TwoHosts` creates and always removes again (`close`, or a
`with` block).  Each namespace gets its loopback up and a multicast route on its veth, so
that DDS discovery (ROS_AUTOMATIC_DISCOVERY_RANGE=SUBNET) finds the other side.  Root
is needed (`available()` says why not, for tests to skip with).  netem is not needed:
the link is a token bucket (`tc qdisc ... tbf`), its rate set from a link trace, and
the trace's packet loss is an nftables rule in the robot's namespace that drops that
share of the UDP datagrams to the base's address at random (`set_loss`; multicast
discovery is spared; needs the `nft` tool, Debian's nftables: `loss_available()`).
"""
from __future__ import annotations

import math
import os
import shutil
import subprocess
import threading
import time

SUBNET = "192.0.2.0/24"
ROBOT_ADDR, BASE_ADDR = "192.0.2.1", "192.0.2.2"


def _run(*args, check=True) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, check=check, timeout=20)


def available() -> tuple[bool, str]:
    """Whether namespaces, veth and tbf can be made here, and if not why."""
    if os.geteuid() != 0:
        return False, "network namespaces need root (ip netns add)"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return False, f"'{tool}' (iproute2) is not installed"
    name = f"mcucoder-probe-{os.getpid()}"
    r = _run("ip", "netns", "add", name, check=False)
    if r.returncode != 0:
        return False, f"ip netns add failed: {r.stderr.strip()}"
    try:
        r = _run("ip", "netns", "exec", name, "ip", "link", "add", "p0", "type", "veth", "peer", "name", "p1",
                 check=False)
        if r.returncode != 0:
            return False, f"no veth pairs here: {r.stderr.strip()}"
        r = _run("ip", "netns", "exec", name, "tc", "qdisc", "add", "dev", "p0", "root", "tbf", "rate", "1mbit",
                 "burst", "4kb", "latency", "100ms", check=False)
        if r.returncode != 0:
            return False, f"no tbf qdisc here: {r.stderr.strip()}"
    finally:
        _run("ip", "netns", "del", name, check=False)
    return True, ""


def loss_available() -> tuple[bool, str]:
    """Whether set_loss can work here (nftables in a namespace), and if not why."""
    ok, why = available()
    if not ok:
        return ok, why
    if shutil.which("nft") is None:
        return False, "'nft' (Debian's nftables) is not installed: no packet loss on the link"
    name = f"mcrl{os.getpid() % 100000}"
    r = _run("ip", "netns", "add", name, check=False)
    if r.returncode != 0:
        return False, f"ip netns add failed: {r.stderr.strip()}"
    try:
        r = _run("ip", "netns", "exec", name, "nft", "add", "table", "inet", "t", check=False)
        if r.returncode != 0:
            return False, f"nftables does not work here: {r.stderr.strip()}"
    finally:
        _run("ip", "netns", "del", name, check=False)
    return True, ""


def dds_environment(domain_id: int, profile: str | None = None) -> dict:
    """What a ROS process inside one of the namespaces needs: discovery on the subnet (the
    two namespaces only), UDP for all traffic (shared memory would bypass the veth and its
    bottleneck, the two namespaces being on one machine), its own domain."""
    env = {"ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET", "ROS_DOMAIN_ID": str(domain_id),
           "FASTDDS_BUILTIN_TRANSPORTS": "UDPv4", "RMW_IMPLEMENTATION": "rmw_fastrtps_cpp"}
    if profile:
        env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(profile)
    return env


def tbf_args(rate_bps: float, queue_s: float = 0.5, burst_bytes: int = 1600) -> list[str]:
    """tbf settings for a link of this rate: a bucket of one packet, emptied at no more
    than 1.02 x the rate (peakrate), so that every packet takes its time on the link as on
    a radio of that rate (no burst at line speed after an idle spell), and a queue of
    `queue_s` at the rate in front of it."""
    rate = max(1000, int(rate_bps))
    limit = max(3000, int(rate / 8 * queue_s) + burst_bytes)
    return ["rate", f"{rate}bit", "burst", str(burst_bytes), "limit", str(limit),
            "peakrate", f"{int(rate * 1.02) + 1}bit", "mtu", str(burst_bytes)]


class TwoHosts:
    """The two namespaces and the veth between them (see the module text)."""

    def __init__(self, prefix: str | None = None, queue_s: float = 0.5):
        self.prefix = prefix or f"mcr{os.getpid() % 100000}"
        self.robot, self.base = f"{self.prefix}-robot", f"{self.prefix}-base"
        self.robot_dev, self.base_dev = f"{self.prefix}r"[:15], f"{self.prefix}b"[:15]
        self.queue_s = queue_s
        self.rate_bps = None
        self.loss = None
        self._made = []

    def __enter__(self):
        self.up()
        return self

    def __exit__(self, *exc):
        self.close()

    def up(self) -> None:
        try:
            for ns in (self.robot, self.base):
                _run("ip", "netns", "add", ns)
                self._made.append(ns)
            _run("ip", "link", "add", self.robot_dev, "netns", self.robot, "type", "veth",
                 "peer", "name", self.base_dev, "netns", self.base)
            for ns, dev, addr in ((self.robot, self.robot_dev, ROBOT_ADDR), (self.base, self.base_dev, BASE_ADDR)):
                ex = ["ip", "netns", "exec", ns]
                _run(*ex, "ip", "addr", "add", f"{addr}/24", "dev", dev)
                _run(*ex, "ip", "link", "set", dev, "up")
                _run(*ex, "ip", "link", "set", "lo", "up")
                _run(*ex, "ip", "route", "add", "224.0.0.0/4", "dev", dev)
        except BaseException:
            self.close()
            raise

    def set_loss(self, loss: float) -> None:
        """Drop this share (0..1) of the robot's unicast UDP datagrams to the base, at random."""
        ex = ["ip", "netns", "exec", self.robot, "nft"]
        if self.loss is None:
            _run(*ex, "add", "table", "inet", "mcr")
            _run(*ex, "add", "chain", "inet", "mcr", "loss", "{ type filter hook output priority 0; }")
        _run(*ex, "flush", "chain", "inet", "mcr", "loss")
        per_mille = max(0, min(1000, round(loss * 1000)))
        if per_mille:
            _run(*ex, "add", "rule", "inet", "mcr", "loss", "ip", "daddr", BASE_ADDR, "meta", "l4proto", "udp",
                 "numgen", "random", "mod", "1000", "<", str(per_mille), "counter", "drop")
        self.loss = loss

    def set_rate(self, rate_bps: float) -> None:
        """The robot -> base bottleneck's rate, now (add the first time, change after)."""
        verb = "change" if self.rate_bps is not None else "add"
        _run("ip", "netns", "exec", self.robot, "tc", "qdisc", verb, "dev", self.robot_dev, "root", "tbf",
             *tbf_args(rate_bps, self.queue_s))
        self.rate_bps = rate_bps

    def link_stats(self) -> dict:
        """The bottleneck's counters: bytes and packets sent, dropped (tc -s)."""
        r = _run("ip", "netns", "exec", self.robot, "tc", "-s", "qdisc", "show", "dev", self.robot_dev)
        words = r.stdout.split()
        out = {}
        try:
            i = words.index("Sent")
            out["bytes"], out["packets"] = int(words[i + 1]), int(words[i + 3])
            out["dropped"] = int(words[words.index("(dropped", i) + 1].rstrip(","))
        except (ValueError, IndexError):
            pass
        return out

    def exec_prefix(self, side: str) -> list[str]:
        """Command prefix that runs a program inside the robot's or the base's namespace."""
        return ["ip", "netns", "exec", self.robot if side == "robot" else self.base]

    def close(self) -> None:
        for ns in reversed(self._made):
            _run("ip", "netns", "del", ns, check=False)    # takes its end of the veth with it
        self._made.clear()


CHANGE_STEP = 0.1           # a rate change of this share applies at once ...
CHANGE_EVERY_S = 1.0        # ... a smaller one after this long since the last change


class TraceFollower:
    """Sets the bottleneck's rate (`tc qdisc change`) and loss (nftables) from a link trace
    (mcucoder_ros.link_emulation.Trace) as time passes; records the link's counters at each step."""

    def __init__(self, hosts: TwoHosts, trace, min_rate_bps: float = 1000.0, with_loss: bool = True):
        self.hosts, self.trace, self.min_rate = hosts, trace, min_rate_bps
        self.with_loss = with_loss        # the trace's loss too (nftables); False: rate only
        self._changed = -math.inf
        self.t0 = None
        self.steps: list[dict] = []       # {t, rate_bps, stats} as applied
        self._stop = threading.Event()
        self._thread = None

    def start(self) -> None:
        self.t0 = time.monotonic()
        self._apply(self.trace.points[0])
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _apply(self, p) -> None:
        rate = max(self.min_rate, p.bandwidth_bps)
        now = time.monotonic() - self.t0
        cur = self.hosts.rate_bps
        # tbf refills its bucket (one packet) at every change: on a trace of 0.1-s steps that
        # made a 100 kbit/s link carry 150.  A small step waits until it has added up to
        # CHANGE_STEP or CHANGE_EVERY_S has passed (<= one packet of extra per second)
        if cur is None or abs(rate / cur - 1) >= CHANGE_STEP or now - self._changed >= CHANGE_EVERY_S:
            self._changed = now
            self.hosts.set_rate(rate)
        elif not (self.with_loss and p.loss != (self.hosts.loss or 0.0)):
            return
        if self.with_loss and p.loss != (self.hosts.loss or 0.0):
            self.hosts.set_loss(p.loss)
        self.steps.append({"t": time.monotonic() - self.t0, "trace_t": p.t, "rate_bps": float(self.hosts.rate_bps),
                           "loss": float(p.loss), "stats": self.hosts.link_stats()})

    def _run(self) -> None:
        for p in self.trace.points[1:]:
            if self._stop.wait(max(0.0, self.t0 + p.t - time.monotonic())):
                return
            self._apply(p)

    def stop(self) -> dict:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
        return self.hosts.link_stats()
