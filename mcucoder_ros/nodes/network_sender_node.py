"""network_sender_node: the robot's end of the network hop to the base station.

Subscribes `latent_gated` (what the bitrate controller let through) and publishes each
frame on `latent_chunks` as a train of LatentChunk samples (mcucoder_ros/chunking.py:
chunk 0 alone, the others packed into parts of at most `part_bytes`), so that no sample
needs IP fragments, a lost sample costs its own channels only, and the base station can
time the train to tell the controller how fast the link is (network_receiver_node's
`delivery_report`).  QoS of `latent_chunks`: `network_reliability` / `network_depth`
(docs/ros.md "Robot and base station" says why best effort is the default).

Given a `network_context` (`mcucoder-ros pipeline --split robot` does), the topics that
cross live on a helper node of that context only (`<name>_net`, a DDS participant of its
own): `latent_chunks` out, `delivery_report` and `receiver_report` in, relayed into this
node's own graph.  The base then discovers three endpoints instead of every node's
(parameter services, rosout, the camera's topics), which over a 100 kbit/s radio is the
difference between discovery finishing and never finishing (docs/ros.md).
"""
from __future__ import annotations

import threading

from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node

from ..chunking import PART_BYTES, split_frame
from ..msg import DeliveryReport, LatentChannels, LatentChunk, ReceiverReport
from .common import QOS_PARAMS, RELIABILITY, WAIT_PARAM, McuNode, ParamSpec, message_bytes, run_node

NETWORK_QOS_PARAMS = {
    "network_reliability": ParamSpec("best_effort", "QoS reliability of latent_chunks, the topic that crosses the "
                                     "network (best_effort: a lost part costs its channels; reliable: it is sent "
                                     "again, and the parts behind it wait)", choices=list(RELIABILITY),
                                     read_only=True),
    "network_depth": ParamSpec(50, "QoS history depth of latent_chunks (parts, several frames' worth)",
                               range=(1, 1000), read_only=True),
}


class NetworkSide:
    """A helper node in the context the network topics live in, spun in a thread of its own
    (rclpy's EventsExecutor cannot hand callbacks their MessageInfo, which the receiver's
    train timing needs).  `bridged`: that context is not the owner's own graph."""

    def __init__(self, owner: Node, context=None):
        ctx = context or owner.context
        self.bridged = ctx is not owner.context
        self.node = Node(f"{owner.get_name()}_{'net' if self.bridged else 'rx'}", namespace=owner.get_namespace(),
                         context=ctx, start_parameter_services=False, enable_rosout=not self.bridged)
        self._exec = SingleThreadedExecutor(context=ctx)
        self._exec.add_node(self.node)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while not self._stop.is_set() and self.node.context.ok():
            try:
                self._exec.spin_once(timeout_sec=0.05)
            except (ExternalShutdownException, RuntimeError):
                break

    def relay(self, msg_type, topic: str, inward: bool, owner: Node) -> None:
        """Pass `topic` from the network into the owner's graph (inward) or out of it."""
        src, dst = (self.node, owner) if inward else (owner, self.node)
        pub = dst.create_publisher(msg_type, topic, 10)
        src.create_subscription(msg_type, topic, pub.publish, 10)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._exec.shutdown()
        self.node.destroy_node()


class NetworkSenderNode(McuNode):
    PARAMS = {
        "part_bytes": ParamSpec(PART_BYTES, "payload bytes per part at most (a chunk larger than this goes alone)",
                                range=(64, 60000)),
        **NETWORK_QOS_PARAMS,
        **WAIT_PARAM,
        **QOS_PARAMS,
    }

    def __init__(self, network_context=None, **kwargs):
        super().__init__("network_sender_node", **kwargs)
        self.net = None
        host = self
        if network_context is not None and network_context is not self.context:
            self.net = NetworkSide(self, network_context)
            host = self.net.node
            self.net.relay(DeliveryReport, "delivery_report", True, self)
            self.net.relay(ReceiverReport, "receiver_report", True, self)
        self.pub = host.create_publisher(LatentChunk, "latent_chunks", self.qos("network"))
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

    def destroy_node(self):
        if self.net is not None:
            self.net.close()
        return super().destroy_node()

    def diagnostics(self):
        return 0, "running", {"subscribers": self.pub.get_subscription_count()}


def main(args=None):
    run_node(NetworkSenderNode, args)
