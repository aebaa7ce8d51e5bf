"""`mcucoder-ros record`, `mcucoder-ros play` and `mcucoder decode-bag`: compressed
camera streams recorded as rosbag2 (MCAP), replayed with their timing, and decoded
offline into a video, frames and timestamps (docs/ros.md, "Recording")."""
from __future__ import annotations

import csv
import os
import shutil
import signal
import time
from pathlib import Path

from ..bags import (
    LATENT_TYPE,
    BagError,
    BagWriter,
    current_raw,
    deserialize_raw,
    latent_topics,
    read_messages,
    shipped_model_dirs,
    topics_of,
    typestore,
)

os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")   # DDS stays on this machine

DEFAULT_TOPICS = ("latent_gated", "bitrate_status", "link_quality")
KNOWN_TYPES = {"latent": LATENT_TYPE, "latent_gated": LATENT_TYPE, "latent_link": LATENT_TYPE,
               "bitrate_status": "mcucoder_ros/msg/BitrateStatus", "link_quality": "mcucoder_ros/msg/LinkQuality",
               "receiver_report": "mcucoder_ros/msg/ReceiverReport",
               "delivery_report": "mcucoder_ros/msg/DeliveryReport"}


def _msg_class(msgtype: str):
    import importlib
    pkg, _, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{pkg}.msg"), name)


def _absolute(topic: str, namespace: str) -> str:
    return topic if topic.startswith("/") else f"{namespace.rstrip('/')}/{topic}"


# --- record ---------------------------------------------------------------------------

def record(out, topics=DEFAULT_TOPICS, duration: float | None = None, namespace: str = "/mcucoder",
           discovery_s: float = 10.0, storage: str = "mcap") -> dict:
    """Record `topics` (relative to `namespace`) into a new bag until `duration` seconds
    have passed or the process is interrupted (Ctrl-C, SIGTERM)."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    names = [_absolute(t, namespace) for t in topics]
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node("mcucoder_recorder", context=ctx)
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    writer = BagWriter(out, storage)
    # best effort matches reliable and best-effort publishers alike (as ros2 bag record does)
    qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.BEST_EFFORT)
    pending = {n: KNOWN_TYPES.get(n.rsplit("/", 1)[-1]) for n in names}
    stop = {"now": False}
    old = signal.signal(signal.SIGTERM, lambda *_: stop.__setitem__("now", True))

    def subscribe(topic, msgtype):
        writer.add_topic(topic, msgtype)
        node.create_subscription(_msg_class(msgtype), topic,
                                 lambda raw, t=topic: writer.write(t, node.get_clock().now().nanoseconds, raw),
                                 qos, raw=True)

    try:
        t_start = time.monotonic()
        while not stop["now"] and (duration is None or time.monotonic() - t_start < duration):
            if any(ty is None for ty in pending.values()) and time.monotonic() - t_start < discovery_s:
                graph = dict(node.get_topic_names_and_types())
                for n, ty in pending.items():
                    if ty is None and n in graph:
                        pending[n] = graph[n][0]
            for n, ty in list(pending.items()):
                if ty is not None:
                    subscribe(n, ty)
                    del pending[n]
            ex.spin_once(timeout_sec=0.05)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, old)
        writer.close()
        node.destroy_node()
        ex.shutdown()
        rclpy.try_shutdown(context=ctx)
    if pending:
        print(f"not recorded (type unknown, no publisher seen within {discovery_s:.0f} s): {', '.join(pending)}")
    return {"bag": str(out), "messages": dict(writer.counts)}


def record_main(a) -> None:
    res = record(a.out, a.topics, a.duration, a.namespace)
    counts = ", ".join(f"{t}: {n}" for t, n in res["messages"].items())
    size = sum(f.stat().st_size for f in Path(a.out).rglob("*") if f.is_file())
    print(f"wrote {a.out} ({size / 1e6:.2f} MB): {counts}")


# --- play -----------------------------------------------------------------------------

def play(bag, rate: float = 1.0, loop: bool = False, decode: bool = False, namespace: str = "/mcucoder",
         topics=None, params=None, wait_s: float = 5.0) -> dict:
    """Publish the bag's messages with their recorded spacing (divided by `rate`); header
    stamps are kept as recorded.  With `decode`, decoder_node runs in this process on
    the first latent topic (decoding every frame in order: drop_stale false) and
    publishes image_decoded."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    if rate <= 0:
        raise ValueError(f"--rate must be positive, got {rate}")
    info = topics_of(bag)
    chosen = [t for t in info if not topics or t in topics or t.rsplit("/", 1)[-1] in topics]
    if not chosen:
        raise BagError(f"none of the topics {topics} is in {bag} (it has {', '.join(info)})")
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node("mcucoder_player", context=ctx)
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    pubs = {t: node.create_publisher(_msg_class(info[t][0]), t, qos) for t in chosen}
    decoder = None
    if decode:
        lat = [t for t in chosen if info[t][0] == LATENT_TYPE]
        if not lat:
            raise BagError(f"--decode: {bag} holds no {LATENT_TYPE} messages")
        from ..nodes.decoder_node import DecoderNode
        # every recorded frame in order, and no viewer to wait for: the player is the clock
        over = [Parameter(k, value=v)
                for k, v in {"drop_stale": False, "wait_for_subscriber": False, **(params or {})}.items()]
        decoder = DecoderNode(namespace=namespace, context=ctx, parameter_overrides=over,
                              cli_args=["--ros-args", "-r", f"latent_gated:={lat[0]}"])
        ex.add_node(decoder)
    published = dict.fromkeys(chosen, 0)
    errors: list[str] = []
    ts = typestore()
    try:
        # give subscribers a moment to match before the first message (volatile topics
        # lose what is published before): up to wait_s for every played topic, and for
        # image_decoded when decoding here, to have a subscriber
        outs = [p for t, p in pubs.items() if not decoder or info[t][0] != LATENT_TYPE]
        outs += [decoder.lanes[0].pub] if decoder else []
        t_wait = time.monotonic()
        while time.monotonic() - t_wait < wait_s and not all(p.get_subscription_count() for p in outs):
            ex.spin_once(timeout_sec=0.05)
        t_wait = time.monotonic()
        while time.monotonic() - t_wait < 0.5:
            ex.spin_once(timeout_sec=0.05)
        while True:
            t0, first = time.monotonic(), None
            for m in read_messages(bag, chosen, errors):
                first = m.timestamp_ns if first is None else first
                due = t0 + (m.timestamp_ns - first) * 1e-9 / rate
                while time.monotonic() < due:
                    ex.spin_once(timeout_sec=max(0.0, min(0.01, due - time.monotonic())))
                # serialized bytes, republished as recorded (latents of an earlier message
                # definition in today's, so that today's nodes read them)
                pubs[m.topic].publish(current_raw(m.raw, m.msgtype, ts))
                published[m.topic] += 1
            if not loop or errors:
                break
        t_end = time.monotonic()      # let the last frames through the decoder (it queues them all)
        n_lat = sum(n for t, n in published.items() if info[t][0] == LATENT_TYPE)
        while time.monotonic() - t_end < (60.0 if decoder else 1.0):
            ex.spin_once(timeout_sec=0.05)
            c = decoder.counters if decoder else {}
            if decoder and c.get("frames", 0) + c.get("malformed", 0) >= n_lat and time.monotonic() - t_end > 0.5:
                break
    except KeyboardInterrupt:
        pass
    finally:
        decoded = decoder.counters.get("frames", 0) if decoder else None
        for n in ([decoder] if decoder else []) + [node]:
            n.destroy_node()
        ex.shutdown()
        rclpy.try_shutdown(context=ctx)
    return {"published": published, "decoded": decoded, "errors": errors}


def play_main(a) -> None:
    res = play(a.bag, a.rate, a.loop, a.decode, a.namespace, a.topics)
    print("published " + ", ".join(f"{t}: {n}" for t, n in res["published"].items())
          + (f"; decoded {res['decoded']}" if res["decoded"] is not None else ""))
    for e in res["errors"]:
        print(f"warning: {e}")


# --- decode-bag (no ROS needed) -------------------------------------------------------

def decode_bag(bag, out_video=None, frames_dir=None, timestamps_csv=None, channels: int | None = None,
               topic: str | None = None, decoder: str | None = None, progress: bool = True) -> dict:
    """Decode the LatentChannels of a bag exactly as decoder_node does (same model
    folder, same default decoder, missing channels zero-filled); `channels` keeps only
    the first k chunks of each frame, as the bitrate controller would."""
    import numpy as np
    from tqdm import tqdm

    from ..codec import bitstream
    from ..codec.entropy import EntropyError
    from ..codec.images import resize_to, save_rgb
    from ..codec.inter import ReceivedReferences
    from ..codec.model import DecoderModel

    if channels is not None and not 0 <= channels <= 12:
        raise ValueError(f"--channels must be in 0..12, got {channels}")
    info = topics_of(bag)           # read once: a cut-off bag is scanned to list its topics
    lat = latent_topics(bag, info)
    if topic and topic not in lat:
        raise BagError(f"{topic} is not a {LATENT_TYPE} topic of {bag} (those are: {', '.join(lat)})")
    topic = topic or lat[0]
    total = info[topic][1]
    models = shipped_model_dirs()
    decoders: dict[int, DecoderModel] = {}
    ts = typestore()
    if frames_dir:
        Path(frames_dir).mkdir(parents=True, exist_ok=True)
    rows, errors, video = [], [], None
    malformed = 0
    references = {}
    bar = tqdm(total=total, desc=f"decoding {topic}", unit="frame", disable=not progress)
    try:
        for i, m in enumerate(read_messages(bag, [topic], errors)):
            bar.update(1)
            msg = deserialize_raw(m.raw, m.msgtype, ts)
            try:
                frame = bitstream.from_message(msg)
                if channels is not None:
                    refs = frame.reference_deltas[:channels]
                    frame = bitstream.Frame(frame.model_id, frame.sequence, frame.channel_indices[:channels],
                                            frame.chunks[:channels], frame.num_channels, frame.latent_height,
                                            frame.latent_width, references=refs if any(refs) else None,
                                            width=frame.width, height=frame.height)
                if frame.model_id not in models:
                    have = ", ".join(f"{k:#010x} ({d.name})" for k, d in models.items()) or "none"
                    raise BagError(f"frame {frame.sequence} was coded with model {frame.model_id:#010x}, which no "
                                   f"shipped model has (shipped: {have})")
                dec = decoders.get(frame.model_id)
                if dec is None:
                    dec = decoders[frame.model_id] = DecoderModel.load(models[frame.model_id], decoder or None)
                # video mode: frames decode in recording order against the references kept here
                rgb = dec.decode(frame, references.setdefault(frame.model_id, ReceivedReferences()))
            except (bitstream.BitstreamError, EntropyError, ValueError) as e:
                malformed += 1
                bar.write(f"skipped message {i} (sequence {msg.sequence}): {e}")
                continue
            if out_video:
                if video is None:      # at the first picture's size; a later size is resized to it
                    video, video_size = _video_writer(out_video, bag, topic, ts, rgb.shape[1], rgb.shape[0]), \
                        (rgb.shape[1], rgb.shape[0])
                shown = rgb if (rgb.shape[1], rgb.shape[0]) == video_size else resize_to(rgb, video_size)
                video.write(np.ascontiguousarray(shown[..., ::-1]))
            name = ""
            if frames_dir:
                name = f"frame_{len(rows):06d}_seq{frame.sequence}.png"
                save_rgb(Path(frames_dir) / name, rgb)
            sec, ns = msg.header.stamp.sec, msg.header.stamp.nanosec     # exact: no float rounding
            rows.append({"index": len(rows), "sequence": frame.sequence, "stamp_s": f"{sec}.{ns:09d}",
                         "bag_time_s": f"{m.timestamp_ns // 10**9}.{m.timestamp_ns % 10**9:09d}",
                         "channels": len(frame.chunks),
                         "bytes": sum(len(c) for c in frame.chunks), "file": name})
    finally:
        bar.close()
        if video is not None:
            video.release()
    if timestamps_csv:
        with open(timestamps_csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["index", "sequence", "stamp_s", "bag_time_s", "channels", "bytes",
                                              "file"])
            w.writeheader()
            w.writerows(rows)
    if not rows and errors:
        raise BagError(errors[0])
    return {"topic": topic, "frames": len(rows), "malformed": malformed, "errors": errors,
            "decoders": {f"{k:#010x}": d.name for k, d in decoders.items()}}


def _video_writer(path, bag, topic, ts, width, height):
    """mp4 of width x height at the stream's frame rate (median capture spacing of the first frames)."""
    import cv2
    import numpy as np

    first = []
    for m in read_messages(bag, [topic], []):
        msg = deserialize_raw(m.raw, m.msgtype, ts)
        first.append(msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9)
        if len(first) >= 30:
            break
    dt = np.diff(first)
    dt = dt[dt > 0]
    fps = float(np.clip(1.0 / np.median(dt), 1.0, 120.0)) if len(dt) else 15.0
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (int(width), int(height)))
    if not vw.isOpened():
        raise BagError(f"cannot write video {path}")
    return vw


def decode_bag_main(a) -> None:
    res = decode_bag(a.bag, a.output, a.frames, a.timestamps, a.channels, a.topic, a.decoder)
    print(f"{res['frames']} frames of {res['topic']} decoded ({', '.join(res['decoders'].values()) or 'none'})"
          + (f", {res['malformed']} malformed skipped" if res["malformed"] else "")
          + f" -> {a.output}" + (f", frames in {a.frames}" if a.frames else "")
          + (f", timestamps in {a.timestamps}" if a.timestamps else ""))
    for e in res["errors"]:
        print(f"warning: {e}")


# --- bag sizes ------------------------------------------------------------------------

def bag_sizes(out_dir, clip=None, seconds: float = 60.0, fps: float = 15.0, model_dir=None) -> dict:
    """MB per minute of recording, measured by writing real MCAP bags of the bundled
    clip (cycled) at `fps` for `seconds`: LatentChannels at k = 12 and k = 6, raw
    sensor_msgs/Image rgb8 224x224, and sensor_msgs/CompressedImage JPEG at the OpenCV
    quality whose mean MS-SSIM on the same frames comes closest to k = 12 and to k = 6."""
    import numpy as np

    from ..codec import bitstream
    from ..codec.jpeg import jpeg_roundtrip
    from ..codec.metrics import ms_ssim
    from ..codec.model import DecoderModel, EncoderModel
    from ..evaluation import collect_frames
    from ..sources import default_clip

    clip = clip or default_clip()
    frames = [f for _, f in collect_frames([clip])]
    enc, dec = EncoderModel.load(model_dir), DecoderModel.load(model_dir)
    ts = typestore()
    T = ts.types
    Header, Time = T["std_msgs/msg/Header"], T["builtin_interfaces/msg/Time"]
    n = int(seconds * fps)

    def header(i):
        t = 1_700_000_000 + i / fps
        return Header(stamp=Time(sec=int(t), nanosec=int((t % 1) * 1e9)), frame_id="camera")

    coded = {k: [enc.encode(f, k, i) for i, f in enumerate(frames)] for k in (12, 6)}
    quality = {k: float(np.mean([ms_ssim(f, dec.decode(c)) for f, c in zip(frames, coded[k])])) for k in coded}
    jpeg_ms: dict[int, float] = {}

    def jpeg_quality(q):
        if q not in jpeg_ms:
            jpeg_ms[q] = float(np.mean([ms_ssim(f, jpeg_roundtrip(f, q)[1]) for f in frames]))
        return jpeg_ms[q]

    jpeg_q = {}
    for k, target in quality.items():      # the JPEG quality with the closest mean MS-SSIM: coarse, then fine
        def gap(q, target=target):
            return abs(jpeg_quality(q) - target)
        coarse = min(range(5, 101, 5), key=gap)
        jpeg_q[k] = min(range(max(1, coarse - 4), min(100, coarse + 4) + 1), key=gap)

    def latent_msg(i, k):
        fr = coded[k][i % len(frames)]
        return T[LATENT_TYPE](header=header(i), sequence=i, model_id=fr.model_id, bitstream_version=bitstream.VERSION,
                              num_channels=12, latent_height=28, latent_width=28,
                              channel_indices=np.array(fr.channel_indices, np.uint8),
                              chunk_lengths=np.array([len(c) for c in fr.chunks], np.uint16),
                              payload=np.frombuffer(b"".join(fr.chunks), np.uint8),
                              reference_deltas=np.array([], np.uint8), width=224, height=224, scale_shift=0)

    def image_msg(i):
        f = frames[i % len(frames)]
        return T["sensor_msgs/msg/Image"](header=header(i), height=224, width=224, encoding="rgb8", is_bigendian=0,
                                          step=672, data=f.reshape(-1))

    def jpeg_msg(i, q):
        data = jpeg_roundtrip(frames[i % len(frames)], q)[0]
        return T["sensor_msgs/msg/CompressedImage"](header=header(i), format="rgb8; jpeg compressed bgr8",
                                                    data=np.frombuffer(data, np.uint8))

    cases = {"latent_k12": (LATENT_TYPE, lambda i: latent_msg(i, 12)),
             "latent_k6": (LATENT_TYPE, lambda i: latent_msg(i, 6)),
             "image_rgb8": ("sensor_msgs/msg/Image", image_msg),
             f"jpeg_q{jpeg_q[12]}": ("sensor_msgs/msg/CompressedImage", lambda i: jpeg_msg(i, jpeg_q[12])),
             f"jpeg_q{jpeg_q[6]}": ("sensor_msgs/msg/CompressedImage", lambda i: jpeg_msg(i, jpeg_q[6]))}
    res = {"clip": str(clip), "fps": fps, "seconds": seconds, "frame_size": [224, 224], "storage": "mcap",
           "ms_ssim": {f"latent_k{k}": v for k, v in quality.items()},
           "jpeg_quality_matching": {f"latent_k{k}": q for k, q in jpeg_q.items()},
           "jpeg_ms_ssim": {f"q{q}": jpeg_ms[q] for q in jpeg_q.values()}, "mb_per_minute": {}}
    for name, (msgtype, make) in cases.items():
        path = Path(out_dir) / name
        if path.exists():
            shutil.rmtree(path)
        w = BagWriter(path)
        w.add_topic("/camera/stream", msgtype)
        for i in range(n):
            w.write("/camera/stream", int(i / fps * 1e9), ts.serialize_cdr(make(i), msgtype))
        w.close()
        size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        res["mb_per_minute"][name] = size / 1e6 * 60.0 / seconds
    return res


def bag_sizes_main(a) -> None:
    import json
    res = bag_sizes(a.out, a.input, a.seconds)
    for name, mb in res["mb_per_minute"].items():
        print(f"{name:12s} {mb:8.2f} MB per minute at {res['fps']:.0f} frames/s")
    print("MS-SSIM on the clip: " + ", ".join(f"{k} {v:.4f}" for k, v in res["ms_ssim"].items())
          + "; JPEG qualities with the closest MS-SSIM: "
          + ", ".join(f"{k}: q{v} ({res['jpeg_ms_ssim'][f'q{v}']:.4f})"
                      for k, v in res["jpeg_quality_matching"].items()))
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2))
        print(f"wrote {a.json}")
