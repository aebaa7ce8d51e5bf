"""Thin rclpy nodes over the pure codec library (no codec maths here)."""
