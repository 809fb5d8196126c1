"""Managed (lifecycle) nodes over real DDS: a real node driven through rclpy's lifecycle services
(``<node>/change_state``, ``<node>/get_state``) from a separate client node, as ``ros2 lifecycle set`` or
nav2_lifecycle_manager drive it."""
from __future__ import annotations

import time

import numpy as np
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rclpy.parameter import Parameter
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from ros_mmfusion.core.codec.pointcloud import structured_cloud
from ros_mmfusion.nodes.fusion_segmentation import FusionSegmentationNode
from ros_mmfusion.nodes.lidar_depth import LidarDepthNode
from ros_mmfusion.ros.pointcloud import array_to_pointcloud2
from ros_mmfusion.ros.qos import OUTPUT_QOS

from .test_lidar_depth_and_player import BY_PARAMETERS, camera_info, header

MANAGED = Parameter("managed", value=True)


class LifecycleClient:
    """The lifecycle services of node ``name``, called from the graph's probe node (a separate, plain node)."""

    def __init__(self, graph, name: str) -> None:
        self.graph = graph
        self.change = graph.probe.create_client(ChangeState, f"/{name}/change_state")
        self.get = graph.probe.create_client(GetState, f"/{name}/get_state")
        assert graph.spin_until(lambda: self.change.service_is_ready() and self.get.service_is_ready()), \
            f"{name}: no lifecycle services"

    def _call(self, client, request):
        future = client.call_async(request)
        assert self.graph.spin_until(future.done, 30.0), "no answer from the lifecycle service"
        return future.result()

    def state(self) -> str:
        return self._call(self.get, GetState.Request()).current_state.label

    def transition(self, transition_id: int) -> bool:
        request = ChangeState.Request()
        request.transition.id = transition_id
        return self._call(self.change, request).success


def test_a_managed_node_goes_through_every_transition_and_works_only_while_active(graph):
    node = graph.add(LidarDepthNode(parameter_overrides=[BY_PARAMETERS, MANAGED]))
    lifecycle = LifecycleClient(graph, "lidar_depth")
    assert lifecycle.state() == "unconfigured"
    assert not node.input_topics and not hasattr(node, "depth_pub"), "nothing but parameters before configure"
    depth_out = graph.record(Image, "lidar/depth_image")
    info_pub = graph.publisher(CameraInfo, "camera/camera_info", OUTPUT_QOS)
    cloud_pub = graph.publisher(PointCloud2, "lidar/points", OUTPUT_QOS)
    xyz = np.array([[5.0, 0.0, 0.0], [4.0, 1.0, 0.5]], np.float32)

    def feed_and_count(seconds: float = 1.0) -> int:
        """Publish a CameraInfo and a cloud (fresh stamps), spin; how many depth images arrived by then."""
        stamp = time.time_ns()
        info_pub.publish(camera_info(stamp))
        graph.spin_for(0.1)
        cloud_pub.publish(array_to_pointcloud2(structured_cloud(xyz, intensity=np.ones(2, np.float32)),
                                               header(stamp, "lidar")))
        graph.spin_until(lambda: False, seconds)
        return len(depth_out)

    def configure_and_check_inactive() -> None:
        assert lifecycle.transition(Transition.TRANSITION_CONFIGURE)
        assert lifecycle.state() == "inactive"
        graph.wait_matched(cloud_pub)
        assert graph.spin_until(lambda: node.depth_pub.get_subscription_count() > 0)
        before = len(depth_out)
        assert feed_and_count() == before, "an inactive node publishes nothing"
        assert node.camera is None and node.inputs["points"].received == 0, "an inactive node ignores its inputs"

    configure_and_check_inactive()
    assert lifecycle.transition(Transition.TRANSITION_ACTIVATE)
    assert lifecycle.state() == "active"
    assert graph.spin_until(lambda: feed_and_count(0.2) >= 1, 10.0), "an active node publishes its output"
    assert lifecycle.transition(Transition.TRANSITION_DEACTIVATE)
    assert lifecycle.state() == "inactive"
    graph.spin_for(0.5)  # anything in flight arrives
    published = len(depth_out)
    assert feed_and_count() == published, "outputs stop on deactivate"
    assert lifecycle.transition(Transition.TRANSITION_CLEANUP)
    assert lifecycle.state() == "unconfigured"
    assert not hasattr(node, "depth_pub") and not hasattr(node, "camera") and not node.inputs
    assert graph.spin_until(lambda: cloud_pub.get_subscription_count() == 0), "cleanup destroys the subscriptions"
    # configured again after a cleanup, it works again; shutdown then comes from the active state
    configure_and_check_inactive()
    assert lifecycle.transition(Transition.TRANSITION_ACTIVATE)
    assert graph.spin_until(lambda: feed_and_count(0.2) > published, 10.0)
    assert lifecycle.transition(Transition.TRANSITION_ACTIVE_SHUTDOWN)
    assert lifecycle.state() == "finalized"
    assert not node.active and not hasattr(node, "depth_pub")


def test_a_failing_configure_leaves_the_node_unconfigured_and_alive(graph, tmp_path):
    missing = tmp_path / "no_such_package"
    node = graph.add(FusionSegmentationNode(parameter_overrides=[MANAGED, Parameter("model_package",
                                                                                    value=str(missing))]))
    lifecycle = LifecycleClient(graph, "fusion_segmentation")
    assert not lifecycle.transition(Transition.TRANSITION_CONFIGURE), "configure must fail"
    assert lifecycle.state() == "unconfigured", "the node stays unconfigured"
    assert node.configure_error == (f"fusion_segmentation: parameter 'model_package': directory not found: "
                                    f"{missing}"), node.configure_error
    assert not node.input_topics and not hasattr(node, "segmenter")
    assert not lifecycle.transition(Transition.TRANSITION_CONFIGURE), "and again: still alive, still answering"
    assert lifecycle.transition(Transition.TRANSITION_UNCONFIGURED_SHUTDOWN)
    assert lifecycle.state() == "finalized"


def test_an_unmanaged_node_offers_no_lifecycle_services_and_is_active_at_once(graph):
    node = graph.add(LidarDepthNode(parameter_overrides=[BY_PARAMETERS]))
    assert node.active and node.lifecycle_state == "active"
    graph.spin_for(0.5)
    services = {name for name, _ in graph.probe.get_service_names_and_types()}
    assert "/lidar_depth/get_parameters" in services, "the graph sees the node's services"
    assert "/lidar_depth/change_state" not in services
