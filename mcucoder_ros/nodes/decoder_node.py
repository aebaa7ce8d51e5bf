"""decoder_node: LatentChannels -> sensor_msgs/Image (rgb8) through onnxruntime.

Missing channels are zero-filled.  Malformed messages are logged, counted and
dropped.  The output keeps the capture stamp and frame_id of the source.
"""
from __future__ import annotations

import time

import cv2
import numpy as np
from rclpy.qos import HistoryPolicy, QoSProfile
from sensor_msgs.msg import Image

from ..codec.bitstream import BitstreamError
from ..codec.entropy import EntropyError
from ..codec.model import DecoderModel, ModelError
from ..msg import LatentChannels
from .common import QOS_PARAMS, McuNode, ParamSpec, RateMeter, msg_to_frame, rgb_to_image, run_node


class DecoderNode(McuNode):
    PARAMS = {
        "output_width": ParamSpec(0, "resize decoded frames to this width (0: 224)", range=(0, 4096)),
        "output_height": ParamSpec(0, "resize decoded frames to this height (0: 224)", range=(0, 4096)),
        "threads": ParamSpec(2, "onnxruntime threads (0: all cores)", range=(0, 64), read_only=True),
        "decoder": ParamSpec("fast", "decoder architecture file in the model folder", read_only=True),
        "model_dir": ParamSpec("", "model folder (empty: the shipped default model)", read_only=True),
        "output_reliability": ParamSpec("reliable", "QoS reliability of image_decoded (rviz subscribes reliable)",
                                        choices=["best_effort", "reliable"], read_only=True),
        "output_depth": ParamSpec(10, "QoS depth of image_decoded", range=(1, 100), read_only=True),
        **QOS_PARAMS,
    }

    def __init__(self, **kwargs):
        super().__init__("decoder_node", **kwargs)
        self.model = DecoderModel.load(self.p["model_dir"] or None, self.p["decoder"], self.p["threads"])
        from .common import RELIABILITY
        out_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=self.p["output_depth"],
                             reliability=RELIABILITY[self.p["output_reliability"]])
        self.pub = self.create_publisher(Image, "image_decoded", out_qos)
        self.create_subscription(LatentChannels, "latent_gated", self._on_latent, self.qos())
        self.rate = RateMeter()
        self.latency_ms: list[float] = []
        self.decode_ms = 0.0
        self.last_error = ""

    def _on_latent(self, msg: LatentChannels):
        t0 = time.perf_counter()
        try:
            rgb = self.model.decode(msg_to_frame(msg))
        except (BitstreamError, EntropyError, ModelError, ValueError) as e:
            self.count("malformed")
            self.last_error = str(e)
            self.get_logger().warning(f"dropped frame {msg.sequence}: {e}", throttle_duration_sec=2.0)
            return
        w, h = self.p["output_width"], self.p["output_height"]
        if w and h:
            rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_LINEAR)
        self.pub.publish(rgb_to_image(rgb, msg.header.stamp, msg.header.frame_id))
        self.decode_ms = (time.perf_counter() - t0) * 1000
        now = self.get_clock().now().nanoseconds * 1e-9
        self.latency_ms = (self.latency_ms + [(now - msg.header.stamp.sec - msg.header.stamp.nanosec * 1e-9) * 1e3])[-200:]
        self.count("frames")
        self.count("channels_missing", msg.num_channels - len(msg.channel_indices))
        self.rate.tick()

    def diagnostics(self):
        lat = np.percentile(self.latency_ms, [50, 95]) if self.latency_ms else [float("nan")] * 2
        return (1 if self.counters.get("malformed") else 0), self.last_error or "running", {
            "fps": self.rate.rate, "decode_ms": self.decode_ms, "latency_p50_ms": float(lat[0]),
            "latency_p95_ms": float(lat[1])}


def main(args=None):
    run_node(DecoderNode, args)
