"""encoder_node: host-side stand-in for the MCU camera.

Input: a sensor_msgs/Image topic (`image_raw`) or a video file / image folder /
camera device (OpenCV).  Runs the exact INT8 encoder, quantisation and rANS coding
of the first `channel_budget` channels and publishes `latent` (LatentChannels).

`video_mode`: channels are coded against references the receiver acknowledged
(`reference_ack`, forwarded by the bitrate controller from the decoder), bitstream v2;
without acknowledgements the stream stays intra.
"""
from __future__ import annotations

import time

from sensor_msgs.msg import Image
from std_msgs.msg import UInt8

from ..codec.geometry import LATENT_CHANNELS
from ..codec.images import ImageError
from ..codec.inter import MAX_REFERENCE_DELTA, ReferenceState
from ..codec.model import EncoderModel
from ..msg import LatentChannels, ReceiverReport
from ..sources import FrameSource
from .common import QOS_PARAMS, WAIT_PARAM, McuNode, ParamSpec, RateMeter, frame_to_msg, image_to_rgb, run_node


class EncoderNode(McuNode):
    PARAMS = {
        "source": ParamSpec("image_topic", "where frames come from", choices=["image_topic", "video", "images",
                                                                              "camera"], read_only=True),
        "input": ParamSpec("", "video file, image folder or camera index (not used for image_topic)",
                           read_only=True),
        "fps": ParamSpec(15.0, "frame rate for file and camera sources (0: the video's own rate)",
                         range=(0.0, 120.0)),
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
        self.references = None
        if self.p["video_mode"]:
            if self.model.inter_coders is None:
                raise ValueError("video_mode needs the model's inter tables (encoder_inter.npz): "
                                 "mcucoder fit-inter")
            self.references = ReferenceState(self.p["max_reference_age"], self.p["refresh_period"])
            self.create_subscription(ReceiverReport, "reference_ack", self._on_ack, 10)
        self.source = None
        self.timer = None
        if self.p["source"] == "image_topic":
            self.create_subscription(Image, "image_raw", self._on_image, self.qos())
        else:
            self.source = FrameSource(self.p["source"], self.p["input"], self.p["loop"])
            self.when_subscribed(self.pub, self._start_frames, "reading frames")
        self.get_logger().info(f"encoding {self.p['source']} {self.p['input']} with model "
                               f"{self.model.model_id:#010x}, budget {self.budget} channels")

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
        t0 = time.perf_counter()
        frame = self.model.encode(rgb, self.budget, self.seq, references=self.references)
        self.encode_ms = (time.perf_counter() - t0) * 1000
        self.pub.publish(frame_to_msg(frame, stamp, frame_id))
        self.seq += 1
        self.count("frames")
        self.count("inter_chunks", sum(1 for d in frame.reference_deltas if d))
        self.rate.tick()

    def diagnostics(self):
        return 0, "finished" if self.finished else "running", {
            "fps": self.rate.rate, "encode_ms": self.encode_ms, "channel_budget": self.budget}


def main(args=None):
    run_node(EncoderNode, args)
