"""``lidar_depth_node``: LiDAR PointCloud2 + CameraInfo -> depth image (32FC1, metres) in the camera's pixels.

The LiDAR X-modality of the fusion segmentation, also useful on its own (RViz, depth completion). The output
carries the cloud's stamp and the camera's optical frame. The LiDAR-to-camera extrinsic comes from TF (the
CameraInfo's frame <- the cloud's frame at the cloud's stamp; a missing or stale transform skips the cloud with a
WARN) unless the parameters give it (``extrinsics_source``, core/extrinsics.py); CameraInfo is taken as the latest
received (it is static per camera).
"""
from __future__ import annotations

import time

from sensor_msgs.msg import Image, PointCloud2
from std_msgs.msg import Header

from ros_mmfusion.core.errors import MessageFormatError
from ros_mmfusion.core.evaluation.topics import EvaluationTopics
from ros_mmfusion.core.extrinsics import EXTRINSIC_PARAMS, camera_from_lidar, changed_camera_from_lidar
from ros_mmfusion.core.health import Level
from ros_mmfusion.core.modalities.lidar import lidar_depth_image
from ros_mmfusion.core.params import ParamSpec
from ros_mmfusion.core.tf_buffer import TF_PARAMS
from ros_mmfusion.ros.entry import check_path_parameters, run_node
from ros_mmfusion.ros.image import numpy_to_image
from ros_mmfusion.ros.node_base import MmfusionNode, stamp_to_ns
from ros_mmfusion.ros.pointcloud import pointcloud2_to_xyz


class LidarDepthNode(MmfusionNode):
    EVALUATION = EvaluationTopics("lidar/points", ("lidar/points",), ("lidar/depth_image",),
                                  inputs=("lidar/points", "camera/camera_info"))
    PARAMS = (
        *EXTRINSIC_PARAMS,
        *TF_PARAMS,
        ParamSpec("max_range", 100.0, "Ignore points farther than this from the camera (m).", minimum=0.1),
        ParamSpec("fill_kernel", 0, "Densify with the nearest depth in a KxK window (0/1: sparse).",
                  minimum=0, maximum=31),
        ParamSpec("max_camera_info_age", 5.0, "Seconds after which the last CameraInfo is considered stale.",
                  minimum=0.0),
    )

    def __init__(self, **kwargs) -> None:
        super().__init__("lidar_depth", **kwargs)

    def configure(self) -> None:
        check_path_parameters(self, files=["calibration_file"])
        self.camera_from_lidar = camera_from_lidar(self.params)  # None: from TF
        if self.camera_from_lidar is None:
            self.enable_tf()
        self.depth_pub = self.output_publisher(Image, "lidar/depth_image")
        self.sensor_subscription(PointCloud2, "lidar/points", self.on_cloud, name="points")
        self._awaiting_info: PointCloud2 | None = None  # the latest cloud that came before any CameraInfo
        self.camera_info_subscription("camera/camera_info", stall_timeout=self.params["max_camera_info_age"],
                                      then=self._first_info_arrived)

    def on_parameters_changed(self, names: frozenset[str]) -> None:
        if changed_camera_from_lidar(self.params, names):
            self.camera_from_lidar = camera_from_lidar(self.params)
        if "max_camera_info_age" in names:
            self.inputs["camera_info"].stall_timeout = self.params["max_camera_info_age"]

    def on_cloud(self, msg: PointCloud2) -> None:
        started = time.perf_counter()
        if self.camera is None:  # the latest cloud waits for the first CameraInfo (a bag may list it after the
            # cloud of the same frame); an older one it replaces is skipped
            self.set_finding("calibration", Level.WARN, "no CameraInfo received yet; clouds skipped")
            if self._awaiting_info is not None:
                self.log_throttled("no_info", "warn", "no CameraInfo received yet; skipping clouds")
                self.frames_skipped += 1
            self._awaiting_info = msg
            return
        self.clear_finding("calibration")
        if not self.has_subscribers([self.depth_pub]):
            return
        points = pointcloud2_to_xyz(msg, limits=self.limits)
        if points.shape[0] == 0:
            raise MessageFormatError("point cloud has no finite points")
        extrinsic = self.camera_from_lidar if self.camera_from_lidar is not None else self.lookup_transform(
            self.camera_frame_id, msg.header.frame_id, stamp_to_ns(msg.header.stamp), "camera <- LiDAR", "points")
        if extrinsic is None:
            return
        depth = lidar_depth_image(points, extrinsic, self.camera, self.params["max_range"],
                                  self.params["fill_kernel"])
        frame_id = self.camera_frame_id or msg.header.frame_id
        out = numpy_to_image(depth, "32FC1", Header(stamp=msg.header.stamp, frame_id=frame_id))
        self.depth_pub.publish(out)
        self.report_timing(stamp_to_ns(msg.header.stamp), started)


    def _first_info_arrived(self) -> None:
        """Project the cloud that waited for the first CameraInfo (typically the same frame's cloud, from a bag or
        driver that sends CameraInfo after it; the output keeps the cloud's stamp, calibration being static)."""
        waiting, self._awaiting_info = self._awaiting_info, None
        if waiting is not None:
            self.run_guarded("points", self.on_cloud, waiting)


def main(args: list[str] | None = None) -> int:
    return run_node(LidarDepthNode, args)


if __name__ == "__main__":
    raise SystemExit(main())

