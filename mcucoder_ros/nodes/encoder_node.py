"""encoder_node: host-side stand-in for the MCU camera.

Input: a sensor_msgs/Image topic (`image_raw`, what camera drivers publish: rgb8, bgr8,
mono8/16, Bayer, YUV 4:2:2), a sensor_msgs/CompressedImage topic (`image_raw/compressed`)
or a video file / image folder / camera device (OpenCV).  Frames are coded at their own
size, or resized with the aspect kept (`width`, `height`, `scale`, as image_proc's
resize).  Runs the exact INT8 encoder, quantisation and rANS coding of the first
`channel_budget` channels and publishes `latent` (LatentChannels, with the size).
`picture_scale` (1, 2 or 4, from the bitrate controller's resolution ladder): frames are
coded at 1/2 or 1/4 of that size (integer box decimation, as the firmware does; bitstream
v4), and the decoder shows them back at the full size.

`frame_rate_limit` (std_msgs/Float32, from the bitrate controller: the frames/s the
receiver can show of this camera): frames beyond it are skipped evenly before they are
encoded, so a host CPU the decoder shares is not spent on frames that would be dropped;
their sequence numbers are left out, which tells the controller the camera's own rate.

`video_mode`: channels are coded against references the receiver acknowledged
(`reference_ack`, forwarded by the bitrate controller from the decoder), bitstream v2;
without acknowledgements the stream stays intra.
"""
from __future__ import annotations

import math
import time

from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Float32, UInt8

from ..codec.geometry import LATENT_CHANNELS, MAX_LONG_SIDE, MAX_SHORT_SIDE, MIN_SIDE, SizeError, check_size, scales_for
from ..codec.images import ImageError, fit_size, resize_to
from ..codec.inter import MAX_REFERENCE_DELTA, ReferenceState
from ..codec.model import EncoderModel
from ..control import FrameRateGate
from ..msg import LatentChannels, ReceiverReport
from ..sources import FrameSource
from .common import (
    QOS_PARAMS,
    WAIT_PARAM,
    McuNode,
    ParamSpec,
    RateMeter,
    compressed_to_rgb,
    frame_to_msg,
    image_to_rgb,
    run_node,
)


class EncoderNode(McuNode):
    PARAMS = {
        "source": ParamSpec("image_topic", "where frames come from", choices=["image_topic", "video", "images",
                                                                              "camera"], read_only=True),
        "input": ParamSpec("", "video file, image folder or camera index (not used for image_topic)",
                           read_only=True),
        "fps": ParamSpec(15.0, "frame rate for file and camera sources (0: the video's own rate)",
                         range=(0.0, 120.0)),
        "width": ParamSpec(0, "code frames resized to this width (0: the frame's own; with height 0, the height "
                           "follows the aspect ratio)", range=(0, MAX_LONG_SIDE), read_only=True),
        "height": ParamSpec(0, "code frames resized to this height (0: the frame's own; with width 0, the width "
                            "follows the aspect ratio)", range=(0, MAX_LONG_SIDE), read_only=True),
        "scale": ParamSpec(0.0, "code frames scaled by this factor, both sides (0: use width/height)",
                           range=(0.0, 8.0), read_only=True),
        "image_transport": ParamSpec("raw", "image_topic source: raw (sensor_msgs/Image on image_raw) or compressed "
                                     "(sensor_msgs/CompressedImage on image_raw/compressed)",
                                     choices=["raw", "compressed"], read_only=True),
        "loop": ParamSpec(False, "restart a file source at its end"),
        "channel_budget": ParamSpec(LATENT_CHANNELS, "channels to code until the controller sends a budget",
                                    range=(1, LATENT_CHANNELS)),
        "frame_id": ParamSpec("camera", "frame_id stamped on the latent"),
        "model_dir": ParamSpec("", "model folder (empty: the shipped default model)", read_only=True),
        "video_mode": ParamSpec(False, "inter-frame coding against acknowledged references (bitstream v2; the "
                                "model needs encoder_inter.npz)", read_only=True),
        "max_reference_age": ParamSpec(30, "video mode: frames after which a reference is not used",
                                       range=(1, MAX_REFERENCE_DELTA)),
        "refresh_period": ParamSpec(60, "video mode: each channel is sent intra once per this many frames, one "
                                    "channel at a time (0: never)", range=(0, 10000)),
        **WAIT_PARAM,
        **QOS_PARAMS,
    }

    def __init__(self, **kwargs):
        super().__init__("encoder_node", **kwargs)
        self.model = EncoderModel.load(self.p["model_dir"] or None)
        self.budget = int(self.p["channel_budget"])
        self.seq = 0
        self.finished = False
        self.rate = RateMeter()
        self.encode_ms = 0.0
        self.pub = self.create_publisher(LatentChannels, "latent", self.qos())
        self.create_subscription(UInt8, "channel_budget", self._on_budget, 10)
        # frames the receiver could not show are skipped here, before they cost an encode
        # (the controller's frame_rate_limit; 0 or none for 3 s: every frame)
        self.thinning = FrameRateGate(margin=1.0, stale_s=3.0)
        self.create_subscription(Float32, "frame_rate_limit", self._on_rate_limit, 10)
        self.scale_shift = 0
        self.create_subscription(UInt8, "picture_scale", self._on_scale, 10)
        self.references = None
        if self.p["video_mode"]:
            if self.model.inter_coders is None:
                raise ValueError("video_mode needs the model's inter tables (encoder_inter.npz): "
                                 "mcucoder fit-inter")
            self.references = ReferenceState(self.p["max_reference_age"], self.p["refresh_period"])
            self.create_subscription(ReceiverReport, "reference_ack", self._on_ack, 10)
        self.source = None
        self.timer = None

        self._sizes: dict[tuple[int, int], tuple[int, int]] = {}     # input size -> coded size
        if self.p["source"] == "image_topic":
            if self.p["image_transport"] == "compressed":
                self.create_subscription(CompressedImage, "image_raw/compressed", self._on_compressed, self.qos())
            else:
                self.create_subscription(Image, "image_raw", self._on_image, self.qos())
        else:
            self.source = FrameSource(self.p["source"], self.p["input"], self.p["loop"])
            self.when_subscribed(self.pub, self._start_frames, "reading frames")
        w, h, sc = self.p["width"], self.p["height"], self.p["scale"]
        size = f"scaled by {sc:g}" if sc else f"resized to {w}x{h}" if w and h \
            else f"resized to {w or 'W'}x{h or 'H'} (aspect kept)" if w or h else "at their own size"
        self.get_logger().info(f"encoding {self.p['source']} {self.p['input']} with model "
                               f"{self.model.model_id:#010x}, budget {self.budget} channels, frames {size}")

    def _start_frames(self):
        if self.timer is not None:
            self.destroy_timer(self.timer)
        self.timer = self.create_timer(1.0 / (self.p["fps"] or self.source.fps or 15.0), self._on_timer)

    def on_parameter_changed(self, name, value):
        if self.references is not None and name in ("max_reference_age", "refresh_period"):
            setattr(self.references, "max_age" if name == "max_reference_age" else name, int(value))
        if name == "fps" and self.timer is not None and not self.finished:
            self._start_frames()          # self.p has the new rate already
        if name == "channel_budget":
            self.budget = int(value)

    def _on_budget(self, msg: UInt8):
        if 1 <= msg.data <= LATENT_CHANNELS:
            self.budget = int(msg.data)
        else:
            self.count("invalid_budgets")

    def _on_rate_limit(self, msg: Float32):
        if msg.data > 0 and math.isfinite(msg.data):
            self.thinning.on_receiver_fps(float(msg.data), time.monotonic())
        else:
            self.thinning.receiver_fps = math.nan

    def _on_scale(self, msg: UInt8):
        shift = {1: 0, 2: 1, 4: 2}.get(int(msg.data))
        if shift is None:
            self.count("invalid_scales")
            self.get_logger().warning(f"picture_scale {msg.data} ignored (1, 2 or 4)", throttle_duration_sec=5.0)
            return
        self.scale_shift = shift

    def _on_ack(self, r: ReceiverReport):
        self.references.acknowledge(r.sequence, list(r.channels_decoded))
        if r.refresh_request:
            self.references.request_refresh()
            self.count("refresh_requests")
        self.count("acks")

    def _on_image(self, msg: Image):
        try:
            rgb = image_to_rgb(msg)
        except ImageError as e:
            self.count("bad_images")
            self.get_logger().warning(str(e), throttle_duration_sec=5.0)
            return
        self.encode_and_publish(rgb, msg.header.stamp, msg.header.frame_id or self.p["frame_id"])

    def _on_compressed(self, msg: CompressedImage):
        try:
            rgb = compressed_to_rgb(msg)
        except ImageError as e:
            self.count("bad_images")
            self.get_logger().warning(str(e), throttle_duration_sec=5.0)
            return
        self.encode_and_publish(rgb, msg.header.stamp, msg.header.frame_id or self.p["frame_id"])

    def coded_size(self, width: int, height: int) -> tuple[int, int]:
        """The size a frame of width x height is coded at: its own, or as the width /
        height / scale parameters ask (aspect kept), and never beyond the codec's
        1920x1088 (a larger frame is scaled down to fit, with a warning once)."""
        key = (width, height)
        if key not in self._sizes:
            w, h = fit_size(width, height, self.p["width"], self.p["height"], self.p["scale"])
            try:
                check_size(w, h)
            except SizeError:
                if min(w, h) < MIN_SIDE:
                    raise
                f = min(MAX_LONG_SIDE / max(w, h), MAX_SHORT_SIDE / min(w, h))
                fitted = (max(MIN_SIDE, int(w * f)), max(MIN_SIDE, int(h * f)))
                self.get_logger().warning(f"frames of {w}x{h} are larger than the codec takes "
                                          f"({MAX_LONG_SIDE}x{MAX_SHORT_SIDE}): coding them at {fitted[0]}x{fitted[1]}"
                                          " (set width, height or scale to choose)")
                w, h = fitted
            if len(self._sizes) < 64:
                self._sizes[key] = (w, h)
            else:
                return w, h
        return self._sizes[key]

    def stop_reading(self):
        """Read no more frames (a timed run ends): frames already sent still travel."""
        if not self.finished:
            self.finished = True
            if self.timer is not None:
                self.timer.cancel()

    def _on_timer(self):
        if self.finished:
            return
        try:
            rgb = self.source.next()
        except ImageError as e:          # an unreadable file in a folder: skip it
            self.count("bad_images")
            self.get_logger().warning(str(e))
            return
        if rgb is None:
            self.stop_reading()
            self.get_logger().info(f"end of input after {self.seq} frames")
            return
        self.encode_and_publish(rgb, self.get_clock().now().to_msg(), self.p["frame_id"])

    def encode_and_publish(self, rgb, stamp, frame_id):
        if not self.thinning.admit(stamp.sec + stamp.nanosec * 1e-9, time.monotonic()):
            self.seq += 1           # the gap tells the controller this camera's own rate
            self.count("frames_skipped_receiver")
            return
        t0 = time.perf_counter()
        try:
            rgb = resize_to(rgb, self.coded_size(rgb.shape[1], rgb.shape[0]))
        except SizeError as e:
            self.count("bad_images")
            self.get_logger().warning(f"frame skipped: {e}", throttle_duration_sec=5.0)
            return
        shift = self.scale_shift if self.scale_shift in scales_for(rgb.shape[1], rgb.shape[0]) else 0
        frame = self.model.encode(rgb, self.budget, self.seq, references=self.references, scale_shift=shift)
        self.encode_ms = (time.perf_counter() - t0) * 1000
        self.pub.publish(frame_to_msg(frame, stamp, frame_id))
        self.seq += 1
        self.count("frames")
        self.count("inter_chunks", sum(1 for d in frame.reference_deltas if d))
        self.rate.tick()

    def diagnostics(self):
        return 0, "finished" if self.finished else "running", {
            "fps": self.rate.rate, "encode_ms": self.encode_ms, "channel_budget": self.budget,
            "picture_scale": 1 << self.scale_shift}


def main(args=None):
    run_node(EncoderNode, args)
