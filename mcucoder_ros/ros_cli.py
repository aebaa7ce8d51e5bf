"""`mcucoder-ros`: run the ROS pipeline in one process (no `ros2 launch` needed).

  mcucoder-ros pipeline --source video --input CLIP [--params FILE] [--loop]
  mcucoder-ros demo [--input CLIP] [--out DIR]
"""
from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")   # DDS stays on this machine
# The nodes share the cores: BLAS threads inside the tiny encoder matmuls only contend.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")


def _app(module: str, fn: str = "main", cameras: str | None = None, live_cameras: str | None = None):
    """The application behind a subcommand, imported only when it runs; with --cameras N > 1
    (and --live), the multi-camera one."""
    def call(a):
        import importlib
        mod = module
        if getattr(a, "cameras", None) and not isinstance(a.cameras, str) and a.cameras > 1 and cameras:
            mod = live_cameras if getattr(a, "live", False) and live_cameras else cameras
        return getattr(importlib.import_module(f"mcucoder_ros.apps.{mod}"), fn)(a)
    return call


def _make_traces(a) -> int:
    from .traces import write_traces
    for p in write_traces(a.out, a.seed):
        print(f"wrote {p}")
    return 0


def _keygen(a) -> int:
    from .link.sealed import write_key_file
    write_key_file(a.file)
    print(f"wrote a new 32-byte device key to {a.file} (mode 600). Give it to the bridge (link_key_file, or "
          f"mcucoder-ros pipeline --link-key {a.file}) and to the device (a build-time key, or once on a trusted "
          f"wire: mcucoder-ros provision --port PORT --key {a.file} --device-id ID).")
    return 0


def main(argv=None):
    from . import pipeline as P

    ap = argparse.ArgumentParser(prog="mcucoder-ros", description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pipeline", help="encoder -> bitrate controller -> decoder in one process")
    p.add_argument("--source", choices=P.SOURCES, default="video")
    p.add_argument("--input", default="", help="video file, image folder or camera index; serial: the port "
                   "(tty, pty or socket://host:port); qemu-*: the video fed to the emulated camera")
    p.add_argument("--params", default=None, help="parameters YAML (default: config/pipeline.yaml)")
    p.add_argument("--loop", action="store_true", help="restart a file input at its end (runs until Ctrl-C)")
    p.add_argument("--namespace", default=P.NAMESPACE)
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p.add_argument("--max-frames", type=int, default=None, help="qemu sources: frames of the video to use")
    p.add_argument("--width", type=int, default=0, help="code frames at this width (default: the camera's or "
                   "video's own size; with only --width or --height the aspect is kept); host sources")
    p.add_argument("--height", type=int, default=0, help="code frames at this height (see --width)")
    p.add_argument("--scale", type=float, default=0.0, help="code frames scaled by this factor, both sides")
    p.add_argument("--video-mode", action="store_true", help="inter-frame coding against acknowledged references "
                   "(encoder_node video_mode; host sources)")
    p.add_argument("--link-key", default=None, metavar="FILE",
                   help="seal the serial link with this device key (serial protocol 2; serial and qemu sources); "
                   "a qemu source's emulated device is provisioned with it")
    p.add_argument("--trace", default=None, help="insert link_emulator_node with this bandwidth trace (CSV)")
    p.add_argument("--serial-trace", default=None,
                   help="throttle the serial stream (device -> host) of a socket:// or qemu source to this trace")
    p.add_argument("--no-link-monitor", action="store_true",
                   help="with --trace: publish no link_quality; the controller estimates from delivery reports")
    p.add_argument("--cameras", default=None, metavar="FILE",
                   help="several cameras on one link (config/cameras.yaml's format): each under "
                   "<namespace>/<name>, one controller and one batched decoder for all")
    p.add_argument("--camera", action="append", default=None, metavar="NAME=SOURCE:INPUT",
                   help="a camera of a multi-camera graph (repeatable; ,weight=W ,min_channels=M appended)")
    p.add_argument("--split", choices=P.SPLITS, default=None,
                   help="one half for two machines (docs/ros.md, Robot and base station): robot = source, bitrate "
                   "controller, network sender; base = network receiver, decoder")
    p.add_argument("--network-reliability", choices=["best_effort", "reliable"], default=None,
                   help="--split: QoS of latent_chunks, the topic that crosses the network (default: the node's)")
    p.add_argument("--fps", type=float, default=None, help="--split robot: frames/s of a file or camera source")
    p.add_argument("--network-domain", type=int, default=None, metavar="ID",
                   help="--split: DDS domain of the topics that cross, the same on both machines (default "
                   "ROS_DOMAIN_ID + 1; each half's own graph stays on ROS_DOMAIN_ID, this machine only)")
    p.add_argument("--whole-graph", action="store_true",
                   help="--split: every node of this half visible on the network (default: only the topics that "
                   "cross, from a DDS participant of their own; the rest discovers this machine only)")
    p.add_argument("--deadline-slack", type=float, default=None, metavar="S",
                   help="--split robot: frames are due one interval + S after capture (default 0.1 over a network; "
                   "the controller's deadline_slack_s)")
    p.add_argument("--clock-offset", type=float, default=0.0,
                   help="--split base: add this to the link times of the delivery reports (a clock that disagrees)")
    p.add_argument("--record", default=None, metavar="FILE",
                   help="--split: write what this half saw of every frame as JSON when it stops")
    p.set_defaults(func=_app("run_pipeline", "run"))
    mt = sub.add_parser("make-traces", help="write the generated link traces (burst loss, jitter, fade and "
                        "outage, lossy low rate) from a seed; docs/abr.md")
    mt.add_argument("--out", default="config/traces", help="folder for the CSVs (default: config/traces)")
    mt.add_argument("--seed", type=int, default=21)
    mt.set_defaults(func=_make_traces)
    k = sub.add_parser("keygen", help="write a new random device key for the sealed serial link (owner-only file)")
    k.add_argument("file", help="key file to create (never overwritten)")
    k.set_defaults(func=_keygen)
    pv = sub.add_parser("provision", help="give the sealed-link key to a device without one, once, naming its "
                        "identity (shown when --device-id is left out); on a trusted wire")
    pv.add_argument("--port", required=True, help="serial device, pty or socket://host:port URL")
    pv.add_argument("--key", required=True, help="key file (mcucoder-ros keygen)")
    pv.add_argument("--device-id", default=None, help="the device's identity (32 hex digits, from its label or "
                    "console); without it, the command only shows the identity of the device on the port")
    pv.add_argument("--timeout", type=float, default=10.0)
    pv.add_argument("--baudrate", type=int, default=921600)
    pv.set_defaults(func=_app("provision"))
    sk = sub.add_parser("soak-link", help="the sealed serial link under injected faults and a vanishing port "
                        "(firmware under QEMU, real bridge), for minutes; prints and writes JSON")
    sk.add_argument("--target", default="m33", help="firmware target under QEMU (default: m33, the one QEMU "
                    "runs fastest: it emulates Helium slowly)")
    sk.add_argument("--input", default=None, help="video for the emulated camera (default: the bundled clip)")
    sk.add_argument("--clip-frames", type=int, default=60, help="frames of the video, looped")
    sk.add_argument("--minutes", type=float, default=10.0)
    sk.add_argument("--fault-rate", type=float, default=0.01, help="per packet and fault kind")
    sk.add_argument("--vanish-every", type=float, default=60.0, help="seconds between closings of the port")
    sk.add_argument("--vanish-for", type=float, default=3.0, help="seconds the port stays closed")
    sk.add_argument("--handshake-every", type=float, default=17.0,
                    help="seconds between handshake faults, in turn: a dropped KEY_EXCHANGE, forged HELLOs of "
                         "protocol 2 and 1, old exchanges and commands replayed, the device reset with fresh storage "
                         "(and its first exchange dropped)")
    sk.add_argument("--seed", type=int, default=1)
    sk.add_argument("--json", default=None, help="write the figures here")
    sk.set_defaults(func=_app("soak_link", "run"))
    d = sub.add_parser("demo", help="the pipeline on a sample clip under a bandwidth trace; writes a report")
    d.add_argument("--input", default=None, help="video (default: the bundled sample clip)")
    d.add_argument("--out", default="out/demo")
    d.add_argument("--trace", default=None, help="CSV t,bandwidth_bps (default: the built-in step trace)")
    d.add_argument("--params", default=None)
    d.add_argument("--cameras", type=int, default=1,
                   help="several cameras on one link (config/cameras.yaml's first N): a grid video and a plot of "
                        "each camera's share of the link, in out/demo_cameras")
    d.set_defaults(func=_app("demo", cameras="demo_cameras"))
    e = sub.add_parser("evaluate-abr", help="adaptive bitrate through an emulated link, per strategy")
    e.add_argument("--trace", required=True, nargs="+",
                   help="CSV t,bandwidth_bps[,loss][,delay_ms] (config/traces/); several: one run each, "
                        "--json holds {runs: [...]} and --plot gets the trace name appended")
    e.add_argument("--input", default=None, help="video (default: the bundled clip)")
    e.add_argument("--json", required=True)
    e.add_argument("--plot", default=None)
    e.add_argument("--estimate-plot", default=None,
                   help="PNG: the rate estimated from delivery reports against each trace's bandwidth")
    e.add_argument("--fps", type=float, default=10.0)
    e.add_argument("--max-frames", type=int, default=30, help="distinct clip frames (cycled)")
    e.add_argument("--live", action="store_true",
                   help="run every strategy through the real ROS nodes in real time (trace duration each) "
                        "instead of in simulated time")
    e.add_argument("--duration", type=float, default=None, help="--live: seconds per strategy (default: the trace's)")
    e.add_argument("--strategies", nargs="+", default=None,
                   choices=["ours", "ours_no_link_quality", "ours_video", "fixed_k12", "fixed_k6", "jpeg_ladder",
                            "ours_ladder", "ours_ladder_no_link_quality", "jpeg_size_ladder"],
                   help="default: all (with --size other than 224x224, the resolution ladder's three too)")
    e.add_argument("--size", default="224x224", metavar="WxH",
                   help="the camera's size (the clip resized to it, cv2.INTER_AREA); other than 224x224 adds the "
                        "resolution ladder: ours_ladder picks (scale, k), jpeg_size_ladder changes size and quality; "
                        "MS-SSIM at the camera's size (with --live, the JPEG size ladder is left out: simulated only)")
    e.add_argument("--cameras", type=int, default=1,
                   help="several cameras on the one link (2 or more): per camera on time, k and MS-SSIM, link use, "
                        "for each --sharing strategy")
    e.add_argument("--sharing", nargs="+", default=None, choices=["shared", "equal", "independent"],
                   help="--cameras: how the link is split (default: all three)")
    e.add_argument("--front-weight", type=float, default=2.0, help="--cameras: weight of camera 0 (others: 1)")
    e.set_defaults(func=_app("evaluate_abr", cameras="evaluate_abr_multi", live_cameras="evaluate_abr_live_multi"))
    th = sub.add_parser("bench-two-hosts", help="robot and base station in two network namespaces through a tbf "
                        "bottleneck following a link trace (root; docs/ros.md, Robot and base station)")
    th.add_argument("--trace", default=None, help="link trace CSV (default: the demo's steps 2 Mbit/s -> 200 kbit/s "
                    "-> 400 kbit/s, 4 + 8 + 8 s)")
    th.add_argument("--duration", type=float, default=None, help="seconds of the trace to run")
    th.add_argument("--reliability", nargs="+", default=["best_effort", "reliable"],
                    choices=["best_effort", "reliable"], help="QoS of latent_chunks, one run each")
    th.add_argument("--clock-offset", nargs="+", type=float, default=[0.0],
                    help="offsets added to the base's report times, one run each (e.g. 0 2 -2)")
    th.add_argument("--fps", type=float, default=10.0)
    th.add_argument("--deadline-slack", type=float, default=P.NETWORK_DEADLINE_SLACK_S,
                    help="the robot half's deadline: frames due one interval + this after capture; on time is judged "
                    "by it (the 50-ms figure is reported beside)")
    th.add_argument("--width", type=int, default=224)
    th.add_argument("--height", type=int, default=224)
    th.add_argument("--input", default=None, help="video (default: the bundled clip)")
    th.add_argument("--workdir", default="out/two_hosts", help="records and logs of each half")
    th.add_argument("--json", default=None)
    th.add_argument("--plot", default=None)
    th.set_defaults(func=_app("bench_two_hosts", "run"))
    r = sub.add_parser("record", help="record the compressed stream into a rosbag2 bag (MCAP), no ROS install needed")
    r.add_argument("--out", required=True, help="bag folder to create")
    r.add_argument("--topics", nargs="+", default=["latent_gated", "bitrate_status", "link_quality"],
                   help="topics, relative to --namespace (default: latent_gated bitrate_status link_quality)")
    r.add_argument("--duration", type=float, default=None, help="seconds to record (default: until Ctrl-C)")
    r.add_argument("--namespace", default=P.NAMESPACE)
    r.set_defaults(func=_app("bag_tools", "record_main"))
    y = sub.add_parser("play", help="republish a recorded bag with its timing (header stamps as recorded)")
    y.add_argument("bag")
    y.add_argument("--rate", type=float, default=1.0, help="playback speed factor")
    y.add_argument("--loop", action="store_true")
    y.add_argument("--topics", nargs="+", default=None, help="only these topics (names or last parts)")
    y.add_argument("--decode", action="store_true", help="also run decoder_node here: publishes image_decoded")
    y.add_argument("--namespace", default=P.NAMESPACE)
    y.set_defaults(func=_app("bag_tools", "play_main"))
    b = sub.add_parser("bench", help="end-to-end frames/s, latency and CPU per node (one process per node)")
    b.add_argument("--seconds", type=float, default=20.0)
    b.add_argument("--fps", type=float, default=15.0)
    b.add_argument("--json", default=None)
    b.add_argument("--size", default="224x224", metavar="WxH|native",
                   help="frame size the encoder codes the clip at (default 224x224, the earlier figures' size; "
                        "native: the clip's own 352x288)")
    b.add_argument("--cameras", type=int, default=1,
                   help="several cameras into one receiver: per camera and total frames/s and latency, one batched "
                        "decoder against one decoder per camera in the same run")
    b.add_argument("--soak-minutes", type=float, default=None,
                   help="--cameras: the batched decoder alone for this long; RSS of every process and every frame "
                        "accounted for (decoded, dropped stale or skipped)")
    b.add_argument("--host-encode", action="store_true",
                   help="--cameras: host encoders per camera instead of replaying pre-encoded latents (MCUs)")
    b.set_defaults(func=_app("bench_pipeline", cameras="bench_cameras"))
    a = ap.parse_args(argv)
    if a.cmd == "pipeline" and a.source != "image_topic" and not a.input and not (a.cameras or a.camera) \
            and a.split != "base":
        ap.error("--input is required for file and camera sources")
    if a.cmd == "pipeline" and a.split:
        a.func = _app("split_pipeline", "run")
    from rclpy.exceptions import InvalidParameterValueException

    from .bags import BagError
    from .codec.images import ImageError
    from .codec.model import ModelError
    try:
        a.func(a)
    except (FileNotFoundError, ValueError, ImageError, ModelError, BagError, InvalidParameterValueException,
            RuntimeError) as e:
        sys.exit(f"mcucoder-ros: error: {e}")


if __name__ == "__main__":
    main()
