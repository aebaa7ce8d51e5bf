"""`mcucoder-ros`: run the ROS pipeline in one process (no `ros2 launch` needed).

  mcucoder-ros pipeline --source video --input CLIP [--params FILE] [--loop]
  mcucoder-ros demo [--input CLIP] [--out DIR]
"""
from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")   # DDS stays on this machine
# The nodes share the cores: BLAS threads inside the tiny encoder matmuls only contend.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")


class Pipeline:
    """The nodes of mcucoder_ros.pipeline.NODES in one process, one executor."""

    def __init__(self, source, input_spec, params_file=None, loop=False, namespace=None, extra_nodes=(),
                 overrides=None, trace=None, link_monitor=True):
        import rclpy
        from rclpy.parameter import Parameter

        from . import pipeline as P

        params_file = str(params_file or P.default_params_file())
        if not os.path.exists(params_file):
            raise FileNotFoundError(f"parameters file not found: {params_file}")
        self.context = rclpy.Context()
        rclpy.init(args=["--ros-args", "--params-file", params_file], context=self.context)
        per_node = P.source_overrides(source, input_spec, loop)
        for node, vals in (overrides or {}).items():
            per_node.setdefault(node, {}).update(vals)
        self.nodes = {}
        self.source_name = P.nodes_for(source)[0][0]
        specs = list(P.nodes_for(source))
        if trace:
            specs.insert(len(specs) - 1, P.LINK_EMULATOR)
            per_node.setdefault("link_emulator_node", {}).update(trace=str(trace), act_as_link_monitor=link_monitor)
        try:
            for name, spec in specs:
                ov = [Parameter(k, value=v) for k, v in per_node.get(name, {}).items()]
                remap = P.DECODER_REMAP_WITH_LINK if trace and name == "decoder_node" else {}
                cli = ["--ros-args"] + [a for k, v in remap.items() for a in ("-r", f"{k}:={v}")] if remap else None
                self.nodes[name] = P.load_class(spec)(namespace=namespace or P.NAMESPACE, parameter_overrides=ov,
                                                      context=self.context, cli_args=cli)
            for make in extra_nodes:
                n = make(self.context)
                self.nodes[n.get_name()] = n
        except Exception:
            self.shutdown()
            raise
        from .nodes.common import make_executor
        self.executor = make_executor(self.context)
        for n in self.nodes.values():
            self.executor.add_node(n)

    @property
    def encoder(self):
        return self.nodes[self.source_name]

    @property
    def frames_in(self) -> int:
        src = self.encoder
        return src.seq if hasattr(src, "seq") else src.frames_published

    def run(self, drain_s: float = 2.0, timeout_s: float | None = None, source_done=None):
        """Spin until the input is exhausted and the last frames have passed the decoder.
        `source_done()` says when a serial source has ended (default: the encoder's flag)."""
        t0 = time.monotonic()
        dec = self.nodes["decoder_node"]
        done_fn = source_done or (lambda: getattr(self.encoder, "finished", False))
        last_in, last_change = -1, time.monotonic()
        while self.context.ok():
            self.executor.spin_once(timeout_sec=0.05)
            now = time.monotonic()
            if timeout_s and now - t0 > timeout_s:
                break
            if self.frames_in != last_in:        # frames may still be arriving (a slow serial link)
                last_in, last_change = self.frames_in, now
            if done_fn():
                caught_up = dec.counters.get("frames", 0) + dec.counters.get("malformed", 0) >= self.frames_in
                quiet = now - last_change
                if (caught_up and (not hasattr(self.encoder, "frames_published") or quiet > 0.5)) \
                        or quiet > drain_s:
                    break

    def shutdown(self):
        import rclpy
        for n in getattr(self, "nodes", {}).values():
            n.destroy_node()
        if hasattr(self, "executor"):
            self.executor.shutdown()
        rclpy.try_shutdown(context=self.context)


def _link_monitor(proxy):
    """A node publishing the throttled serial link's state on link_quality (10 Hz)."""
    def make(context):
        import math

        from rclpy.node import Node

        from . import pipeline as P
        from .msg import LinkQuality
        node = Node("serial_link_monitor", namespace=P.NAMESPACE, context=context)
        pub = node.create_publisher(LinkQuality, "link_quality", 10)

        def tick():
            pt = proxy.trace.at(proxy.now())
            m = LinkQuality(bandwidth_bps=float(pt.bandwidth_bps), packet_loss=float(pt.loss),
                            round_trip_time_s=math.nan, rssi_dbm=math.nan)
            m.header.stamp = node.get_clock().now().to_msg()
            pub.publish(m)
        node.create_timer(0.1, tick)
        return node
    return make


def cmd_pipeline(a):
    qemu = None
    port = a.input
    proxy = None
    if a.source.startswith("qemu-"):
        from .qemu import QemuCamera
        qemu = QemuCamera(a.source[len("qemu-"):], a.input, max_frames=a.max_frames)
        port = qemu.start()
    if a.serial_trace:
        if not port.startswith("socket://"):
            raise ValueError("--serial-trace needs a socket:// serial source (a qemu source or socket://host:port)")
        from .link_emulation import ThrottledSerialProxy, Trace
        host, p_ = port[len("socket://"):].rsplit(":", 1)
        proxy = ThrottledSerialProxy(Trace.load(a.serial_trace), (host, int(p_)))
        port = proxy.url
    extra = []
    if proxy and not a.no_link_monitor:
        extra.append(_link_monitor(proxy))
    try:
        p = Pipeline(a.source, port, a.params, a.loop, a.namespace, trace=a.trace, link_monitor=not a.no_link_monitor,
                     extra_nodes=extra)
    except BaseException:
        if qemu:
            qemu.stop()
        raise
    try:
        done = None
        if qemu:
            done = lambda: qemu.finished() or p.frames_in >= qemu.n_frames  # noqa: E731
        p.run(timeout_s=a.duration, source_done=done)
    except KeyboardInterrupt:
        pass
    finally:
        dec = p.nodes["decoder_node"]
        print(f"frames encoded {p.frames_in}, decoded {dec.counters.get('frames', 0)}, "
              f"malformed {dec.counters.get('malformed', 0)}")
        p.shutdown()
        if proxy:
            proxy.close()
        if qemu:
            qemu.stop()
            print(qemu.report_text())


def cmd_demo(a):
    from .demo import run_demo
    run_demo(a.input, a.out, a.trace, a.params)


def main(argv=None):
    from . import pipeline as P

    ap = argparse.ArgumentParser(prog="mcucoder-ros", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pipeline", help="encoder -> bitrate controller -> decoder in one process")
    p.add_argument("--source", choices=P.SOURCES, default="video")
    p.add_argument("--input", default="", help="video file, image folder or camera index; serial: the port "
                   "(tty, pty or socket://host:port); qemu-m7/qemu-m33: the video fed to the emulated camera")
    p.add_argument("--params", default=None, help="parameters YAML (default: config/pipeline.yaml)")
    p.add_argument("--loop", action="store_true", help="restart a file input at its end (runs until Ctrl-C)")
    p.add_argument("--namespace", default=P.NAMESPACE)
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p.add_argument("--max-frames", type=int, default=None, help="qemu sources: frames of the video to use")
    p.add_argument("--trace", default=None, help="insert link_emulator_node with this bandwidth trace (CSV)")
    p.add_argument("--serial-trace", default=None,
                   help="throttle the serial stream (device -> host) of a socket:// or qemu source to this trace")
    p.add_argument("--no-link-monitor", action="store_true",
                   help="with --trace: publish no link_quality; the controller estimates from delivery reports")
    p.set_defaults(func=cmd_pipeline)
    d = sub.add_parser("demo", help="the pipeline on a sample clip under a bandwidth trace; writes a report")
    d.add_argument("--input", default=None, help="video (default: the bundled sample clip)")
    d.add_argument("--out", default="out/demo")
    d.add_argument("--trace", default=None, help="CSV t,bandwidth_bps (default: the built-in step trace)")
    d.add_argument("--params", default=None)
    d.set_defaults(func=cmd_demo)
    e = sub.add_parser("evaluate-abr", help="adaptive bitrate through an emulated link, per strategy")
    e.add_argument("--trace", required=True, help="CSV t,bandwidth_bps[,loss][,delay_ms] (config/traces/)")
    e.add_argument("--input", default=None, help="video (default: the bundled clip)")
    e.add_argument("--json", required=True)
    e.add_argument("--plot", default=None)
    e.add_argument("--fps", type=float, default=10.0)
    e.add_argument("--max-frames", type=int, default=30, help="distinct clip frames (cycled)")
    e.add_argument("--live", action="store_true",
                   help="run every strategy through the real ROS nodes in real time (trace duration each) "
                        "instead of in simulated time")
    e.add_argument("--duration", type=float, default=None, help="--live: seconds per strategy (default: the trace's)")
    e.add_argument("--strategies", nargs="+", default=None,
                   choices=["ours", "ours_no_link_quality", "fixed_k12", "fixed_k6", "jpeg_ladder"])
    e.set_defaults(func=lambda a: __import__("mcucoder_ros.abr", fromlist=["main"]).main(a))
    b = sub.add_parser("bench", help="end-to-end frames/s, latency and CPU per node (one process per node)")
    b.add_argument("--seconds", type=float, default=20.0)
    b.add_argument("--fps", type=float, default=15.0)
    b.add_argument("--json", default=None)
    b.set_defaults(func=lambda a: __import__("mcucoder_ros.bench_pipeline", fromlist=["main"]).main(a))
    a = ap.parse_args(argv)
    if a.cmd == "pipeline" and a.source != "image_topic" and not a.input:
        ap.error("--input is required for file and camera sources")
    from rclpy.exceptions import InvalidParameterValueException

    from .codec.images import ImageError
    from .codec.model import ModelError
    try:
        a.func(a)
    except (FileNotFoundError, ValueError, ImageError, ModelError, InvalidParameterValueException, RuntimeError) as e:
        sys.exit(f"mcucoder-ros: error: {e}")


if __name__ == "__main__":
    main()
