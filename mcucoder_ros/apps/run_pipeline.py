"""`mcucoder-ros pipeline`: the node set in one process, from a video, camera, image
topic, serial port or the real firmware under QEMU; optional emulated link."""
from __future__ import annotations

import os

from ..pipeline import NAMESPACE, Pipeline, size_overrides


def _link_monitor(proxy):
    """A node publishing the throttled serial link's state on link_quality (10 Hz)."""
    def make(context):
        import math

        from rclpy.node import Node

        from ..msg import LinkQuality
        node = Node("serial_link_monitor", namespace=NAMESPACE, context=context)
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


def cameras_of(a):
    """--cameras FILE and/or repeated --camera NAME=SOURCE:INPUT -> CameraConfig list (None: one camera)."""
    from ..pipeline import _checked, load_cameras, parse_camera_options
    opts = getattr(a, "camera", None) or []
    cams = (load_cameras(a.cameras) if getattr(a, "cameras", None) else []) + \
        (parse_camera_options(opts) if opts else [])
    return _checked(cams, "cameras") if cams else None


def run_cameras(a, cams) -> None:
    """Several cameras, one link, one decoder."""
    import dataclasses
    if a.serial_trace or getattr(a, "link_key", None):
        raise ValueError("--serial-trace and --link-key take one camera (--source); several cameras share --trace")
    qemus, run_cams = [], []
    try:
        for cam in cams:
            if cam.source.startswith("qemu-"):
                from ..qemu import QemuCamera
                q = QemuCamera(cam.source[len("qemu-"):], cam.input, max_frames=a.max_frames, width=cam.width,
                               height=cam.height, scale=cam.scale)
                qemus.append(q)
                cam = dataclasses.replace(cam, input=q.start())
            run_cams.append(cam)
        overrides = {"encoder_node": {"video_mode": True}, "mcu_bridge_node": {"video_mode": True}} \
            if getattr(a, "video_mode", False) else None
        p = Pipeline("video", "", a.params, namespace=a.namespace, trace=a.trace,
                     link_monitor=not a.no_link_monitor, overrides=overrides, cameras=run_cams)
    except BaseException:
        for q in qemus:
            q.stop()
        raise
    try:
        p.run(timeout_s=a.duration)
    except KeyboardInterrupt:
        pass
    finally:
        dec = p.nodes["decoder_node"].camera_counters()
        timing = p.nodes["decoder_node"].camera_timing()
        ctrl = p.nodes["bitrate_controller_node"]
        skipped = {n: ln.skipped for n, ln in ctrl.lanes.items()}
        for name, n_in in p.frames_in_by_camera().items():
            c = dec.get(name, {})
            src_skips = p.sources[name].counters.get("frames_skipped_receiver", 0)
            print(f"{name}: skipped at the source for the receiver {src_skips}, frames encoded {n_in}, "
                  f"decoded {c.get('frames', 0)}, malformed {c.get('malformed', 0)}, "
                  f"dropped stale {c.get('dropped_stale', 0)}, skipped for the receiver {skipped[name][0]}, "
                  f"skipped for the link {skipped[name][1]}; shown at {timing.get(name, {}).get('fps', 0):.1f} "
                  f"frames/s, latency p95 {timing.get(name, {}).get('latency_ms_p95', float('nan')):.0f} ms")
        p.shutdown()
        for q in qemus:
            q.stop()


def run(a) -> None:
    """a: the parsed `mcucoder-ros pipeline` arguments."""
    cams = cameras_of(a)
    if cams:
        run_cameras(a, cams)
        return
    # checked before anything starts
    sized = size_overrides(a.source, getattr(a, "width", 0), getattr(a, "height", 0), getattr(a, "scale", 0.0))
    qemu = None
    port = a.input
    proxy = None
    link_key = None
    if getattr(a, "link_key", None):
        if not (a.source == "serial" or a.source.startswith("qemu-")):
            raise ValueError("--link-key seals a serial link: use it with --source serial or qemu-*")
        from ..link.sealed import read_key_file
        link_key = read_key_file(a.link_key)        # a clear error here rather than in the node
    if a.source.startswith("qemu-"):
        from ..qemu import QemuCamera
        qemu = QemuCamera(a.source[len("qemu-"):], a.input, max_frames=a.max_frames, link_key=link_key,
                          width=getattr(a, "width", 0) or 0, height=getattr(a, "height", 0) or 0,
                          scale=getattr(a, "scale", 0.0) or 0.0)
        port = qemu.start()
    if a.serial_trace:
        if not port.startswith("socket://"):
            raise ValueError("--serial-trace needs a socket:// serial source (a qemu source or socket://host:port)")
        from ..link_emulation import ThrottledSerialProxy, Trace
        host, p_ = port[len("socket://"):].rsplit(":", 1)
        proxy = ThrottledSerialProxy(Trace.load(a.serial_trace), (host, int(p_)))
        port = proxy.url
    extra = []
    if proxy and not a.no_link_monitor:
        extra.append(_link_monitor(proxy))
    overrides = sized
    serial_source = a.source == "serial" or a.source.startswith("qemu-")
    if getattr(a, "video_mode", False):
        overrides.setdefault("mcu_bridge_node" if serial_source else "encoder_node", {})["video_mode"] = True
    if link_key is not None:
        overrides.setdefault("mcu_bridge_node", {})["link_key_file"] = os.path.abspath(a.link_key)
    overrides = overrides or None
    try:
        p = Pipeline(a.source, port, a.params, a.loop, a.namespace, trace=a.trace, link_monitor=not a.no_link_monitor,
                     extra_nodes=extra, overrides=overrides)
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
        ctrl = p.nodes["bitrate_controller_node"]
        src = p.sources.get("")
        src_skips = src.counters.get("frames_skipped_receiver", 0) if src is not None else 0
        print(f"skipped at the source for the receiver {src_skips}, "
              f"frames encoded {p.frames_in}, decoded {dec.counters.get('frames', 0)}, "
              f"malformed {dec.counters.get('malformed', 0)}, dropped stale {dec.counters.get('dropped_stale', 0)}, "
              f"skipped for the receiver {ctrl.counters.get('frames_skipped', 0)}, "
              f"skipped for the link {ctrl.counters.get('frames_skipped_link', 0)}")
        enc = p.nodes.get("encoder_node") or p.nodes.get("mcu_bridge_node")
        if enc is not None and enc.p.get("video_mode"):
            acks = enc.counters.get("acks", 0) + enc.counters.get("acks_forwarded", 0)
            print(f"video mode: {enc.counters.get('inter_chunks', 0)} inter chunks, {acks} "
                  f"acknowledgements, {dec.counters.get('lost_references', 0)} lost references")
        p.shutdown()
        if proxy:
            proxy.close()
        if qemu:
            qemu.stop()
            print(qemu.report_text())
