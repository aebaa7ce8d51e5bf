"""network_sender_node: the robot's end of the network hop to the base station.

Subscribes `latent_gated` (what the bitrate controller let through) and publishes each
frame on `latent_chunks` as a train of LatentChunk samples (mcucoder_ros/chunking.py:
chunk 0 alone, the others packed into parts of at most `part_bytes`), so that no sample
needs IP fragments, a lost sample costs its own channels only, and the base station can
time the train to tell the controller how fast the link is (network_receiver_node's
`delivery_report`).  QoS of `latent_chunks`: `network_reliability` / `network_depth`
(docs/ros.md "Robot and base station" says why best effort is the default).
"""
from __future__ import annotations

from ..chunking import PART_BYTES, split_frame
from ..msg import LatentChannels, LatentChunk
from .common import QOS_PARAMS, RELIABILITY, WAIT_PARAM, McuNode, ParamSpec, message_bytes, run_node

NETWORK_QOS_PARAMS = {
    "network_reliability": ParamSpec("best_effort", "QoS reliability of latent_chunks, the topic that crosses the "
                                     "network (best_effort: a lost part costs its channels; reliable: it is sent "
                                     "again, and the parts behind it wait)", choices=list(RELIABILITY),
                                     read_only=True),
    "network_depth": ParamSpec(50, "QoS history depth of latent_chunks (parts, several frames' worth)",
                               range=(1, 1000), read_only=True),
}


class NetworkSenderNode(McuNode):
    PARAMS = {
        "part_bytes": ParamSpec(PART_BYTES, "payload bytes per part at most (a chunk larger than this goes alone)",
                                range=(64, 60000)),
        **NETWORK_QOS_PARAMS,
        **WAIT_PARAM,
        **QOS_PARAMS,
    }

    def __init__(self, **kwargs):
        super().__init__("network_sender_node", **kwargs)
        self.pub = self.create_publisher(LatentChunk, "latent_chunks", self.qos("network"))
        self.when_subscribed(self.pub, lambda: self.create_subscription(
            LatentChannels, "latent_gated", self._on_frame, self.qos()), "sending frames to the base station")

    def _on_frame(self, m: LatentChannels) -> None:
        try:
            parts = split_frame(m, LatentChunk, message_bytes(m), self.p["part_bytes"])
        except (ValueError, TypeError, AssertionError) as e:     # a malformed frame: count it, carry on
            self.count("malformed")
            self.get_logger().warning(f"frame {m.sequence} not sent: {e}", throttle_duration_sec=5.0)
            return
        for c in parts:
            self.pub.publish(c)
        self.count("frames")
        self.count("parts", len(parts))

    def diagnostics(self):
        return 0, "running", {"subscribers": self.pub.get_subscription_count()}


def main(args=None):
    run_node(NetworkSenderNode, args)
