"""A separate OS process for the cross-process DDS test: publishes or receives large Images and PointCloud2s.

publish: waits for the subscriber to match, then sends COUNT 1280x720 rgb8 images and COUNT 120k-point clouds at RATE
Hz (sensor-data QoS), each stamped with the wall clock just before publication and filled with a per-message pattern.
receive: records, per message, the index, arrival latency (wall clock minus header stamp) and whether the payload
matches the pattern, then writes JSON to OUT when it has all messages or TIMEOUT seconds passed.
"""
from __future__ import annotations

import json
import sys
import time

import numpy as np
import rclpy
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image, PointCloud2, PointField

import ros_mmfusion.ros  # noqa: F401  (selects the Fast DDS profile unless the environment already names one)

W, H, POINTS = 1280, 720, 120_000


def stamp(msg, stamp_ns: int):
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    return msg


def make_image(i: int) -> Image:
    msg = Image()
    msg.header.frame_id = str(i)
    msg.height, msg.width, msg.encoding, msg.step = H, W, "rgb8", W * 3
    msg.data = np.full(H * W * 3, i % 251, dtype=np.uint8).tobytes()
    return msg


def make_cloud(i: int) -> PointCloud2:
    msg = PointCloud2()
    msg.header.frame_id = str(i)
    msg.height, msg.width = 1, POINTS
    msg.fields = [PointField(name=n, offset=4 * k, datatype=PointField.FLOAT32, count=1) for k, n in enumerate("xyzi")]
    msg.point_step, msg.row_step, msg.is_dense = 16, 16 * POINTS, True
    msg.data = np.full(POINTS * 4, float(i), dtype=np.float32).tobytes()
    return msg


def publish(count: int, rate: float) -> None:
    node = rclpy.create_node("large_message_publisher")
    pubs = {"image": node.create_publisher(Image, "big/image", qos_profile_sensor_data),
            "cloud": node.create_publisher(PointCloud2, "big/cloud", qos_profile_sensor_data)}
    deadline = time.monotonic() + 20.0
    while any(p.get_subscription_count() == 0 for p in pubs.values()) and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)
    time.sleep(1.0)  # let the subscriber's reader finish matching on all transports
    for i in range(count):
        image, cloud = make_image(i), make_cloud(i)  # built first: the stamp measures transport, not construction
        pubs["image"].publish(stamp(image, time.time_ns()))
        pubs["cloud"].publish(stamp(cloud, time.time_ns()))
        time.sleep(1.0 / rate)
    time.sleep(1.0)
    node.destroy_node()


def receive(count: int, out: str, timeout: float) -> None:
    node = rclpy.create_node("large_message_subscriber")
    records: dict[str, list] = {"image": [], "cloud": []}

    def on_image(msg: Image) -> None:
        now = time.time_ns()
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        i = int(msg.header.frame_id)
        data = np.frombuffer(msg.data, dtype=np.uint8)
        ok = msg.width == W and msg.height == H and data.size == W * H * 3 and bool(np.all(data == i % 251))
        records["image"].append({"i": i, "latency_ms": (now - stamp) / 1e6, "intact": ok})

    def on_cloud(msg: PointCloud2) -> None:
        now = time.time_ns()
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        i = int(msg.header.frame_id)
        data = np.frombuffer(msg.data, dtype=np.float32)
        ok = msg.width == POINTS and data.size == POINTS * 4 and bool(np.all(data == float(i)))
        records["cloud"].append({"i": i, "latency_ms": (now - stamp) / 1e6, "intact": ok})

    node.create_subscription(Image, "big/image", on_image, qos_profile_sensor_data)
    node.create_subscription(PointCloud2, "big/cloud", on_cloud, qos_profile_sensor_data)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and min(len(r) for r in records.values()) < count:
        rclpy.spin_once(node, timeout_sec=0.05)
    with open(out, "w") as f:
        json.dump(records, f)
    node.destroy_node()


if __name__ == "__main__":
    mode, count = sys.argv[1], int(sys.argv[2])
    rclpy.init()
    try:
        if mode == "publish":
            publish(count, float(sys.argv[3]))
        else:
            receive(count, sys.argv[3], float(sys.argv[4]))
    finally:
        rclpy.try_shutdown()
