"""Helpers for tests that run real rclpy nodes over real DDS inside the test process."""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node


class Graph:
    """An executor with the nodes under test plus a probe node that publishes inputs and records outputs."""

    def __init__(self) -> None:
        self.executor = SingleThreadedExecutor()
        self.probe = rclpy.create_node("test_probe")
        self.executor.add_node(self.probe)
        self.nodes: list[Node] = []
        self.received: dict[str, list[Any]] = {}

    def add(self, node: Node) -> Node:
        self.nodes.append(node)
        self.executor.add_node(node)
        return node

    def record(self, msg_type: type, topic: str, qos: Any = 10) -> list[Any]:
        box: list[Any] = []
        self.received[topic] = box
        self.probe.create_subscription(msg_type, topic, box.append, qos)
        return box

    def publisher(self, msg_type: type, topic: str, qos: Any = 10):
        return self.probe.create_publisher(msg_type, topic, qos)

    def spin_until(self, predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.02)
            if predicate():
                return True
        return predicate()

    def spin_for(self, seconds: float) -> None:
        self.spin_until(lambda: False, seconds)

    def wait_matched(self, pub, timeout: float = 10.0) -> None:
        assert self.spin_until(lambda: pub.get_subscription_count() > 0, timeout), f"{pub.topic_name}: no subscriber"

    def set_parameters(self, node_name: str, parameters: list[Any], timeout: float = 10.0) -> list[Any]:
        """``set_parameters`` on node ``node_name`` over DDS (its parameter service, as ``ros2 param set`` does);
        the ``SetParametersResult`` of each parameter."""
        from rclpy.parameter_client import AsyncParameterClient

        client = AsyncParameterClient(self.probe, node_name)
        assert self.spin_until(lambda: client.services_are_ready(), timeout), f"{node_name}: no parameter service"
        future = client.set_parameters(parameters)
        assert self.spin_until(future.done, timeout), f"{node_name}: set_parameters got no answer"
        return list(future.result().results)

    def close(self) -> None:
        for node in self.nodes:
            self.executor.remove_node(node)
            getattr(node, "close", lambda: None)()
            node.destroy_node()
        self.executor.remove_node(self.probe)
        self.probe.destroy_node()
        self.executor.shutdown()
