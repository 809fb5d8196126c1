"""The ROS side of evaluation: the feed that turns tapped messages into arrays and stamps for the ROS-free
:class:`~ros_mmfusion.core.evaluation.session.EvaluationSession` (which of a preset's nodes are evaluated:
``launcher.evaluated_nodes``).

Stamps are header stamps in ns (the bag player's restamped input stamps, so a prediction and the ground truth of
its frame share one); messages without a header (``std_msgs/Int32`` closest node) are fed in arrival order.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ros_mmfusion.core.evaluation.session import DIAGNOSTICS, GT_BOXES, EvaluationSession
from ros_mmfusion.core.geometry import quaternion_to_yaw
from ros_mmfusion.core.stamps import stamp_to_ns
from ros_mmfusion.ros.detections import detections_2d_to_arrays, detections_to_arrays
from ros_mmfusion.ros.image import image_to_numpy
from ros_mmfusion.ros.pointcloud import pointcloud2_to_xyz


@dataclass
class EvaluationFeed:
    """Routes tapped messages (absolute topics) to ``session``, converted to arrays; topics not named are ignored."""

    session: EvaluationSession
    labels_topics: set[str] = field(default_factory=set)  # mono8 class-id predictions
    detection_topics: set[str] = field(default_factory=set)  # Detection3DArray predictions
    rgb_topic: str | None = None  # the camera image of the segmentation sample frame
    cloud_topic: str | None = None  # the detector's PointCloud2 input (ground truth's LiDAR returns per box)
    boxes_2d_topic: str | None = None  # Detection2DArray ground truth (KITTI protocol: 2D heights, DontCare)
    path_topic: str | None = None
    closest_topic: str | None = None
    odom_topic: str | None = None
    odom_frame: str = ""  # the frame of the odometry messages seen (a path in it is in the odometry frame)
    label_map: Any = None  # core.label_maps.LabelMap: the ground truth is its palette image, not suite class ids
    unknown_colour_pixels: int = 0  # ground-truth pixels whose colour is none of the label map's (read as ignore)

    def ground_truth_ids(self, msg: Any) -> np.ndarray:
        """The suite class ids of a ground-truth semantic Image: mono8 ids as they are, or through ``label_map``
        a colour palette image (rgb8/bgr8/rgba8/bgra8), unknown colours read as ignore and counted."""
        if self.label_map is None:
            return image_to_numpy(msg).copy()
        from ros_mmfusion.core.codec.image import decode_rgb

        rgb = decode_rgb(msg.height, msg.width, msg.encoding, msg.is_bigendian, msg.step, msg.data)
        ids, unknown = self.label_map.decode_colours(rgb)
        self.unknown_colour_pixels += unknown
        return ids

    def __call__(self, topic: str, msg: Any) -> None:
        seg, det, nav = self.session.segmentation, self.session.detection, self.session.navigation
        if topic == DIAGNOSTICS:
            for status in msg.status:
                self.session.add_status(status.name, {kv.key: kv.value for kv in status.values})
            return
        if nav is not None and topic == self.closest_topic:
            nav.add_closest_node(msg.data)
        if not hasattr(msg, "header"):
            return
        stamp = stamp_to_ns(msg.header.stamp)
        if nav is not None:
            if topic == self.path_topic:
                in_odom = bool(msg.header.frame_id) and msg.header.frame_id == self.odom_frame
                nav.add_path(stamp, [(p.pose.position.x, p.pose.position.y) for p in msg.poses], in_odom)
            elif topic == self.odom_topic:
                self.odom_frame = msg.header.frame_id
                pose = msg.pose.pose
                q = pose.orientation
                nav.add_odometry(stamp, pose.position.x, pose.position.y,
                                 quaternion_to_yaw(np.array([q.x, q.y, q.z, q.w])))
        if det is not None and topic == self.cloud_topic:
            det.add(stamp, cloud=pointcloud2_to_xyz(msg))
        if det is not None and topic == self.boxes_2d_topic:
            det.add(stamp, boxes_2d=detections_2d_to_arrays(msg))
        if det is not None and topic == GT_BOXES:
            det.add(stamp, gt=(*detections_to_arrays(msg), [d.id for d in msg.detections]))
        elif det is not None and topic in self.detection_topics:
            det.add(stamp, pred=detections_to_arrays(msg))
        if seg is None:
            return
        if topic == self.session.semantic_topic:
            seg.add(stamp, gt=self.ground_truth_ids(msg))
        elif topic in self.labels_topics:
            seg.add(stamp, pred=image_to_numpy(msg).copy())
        elif topic == self.rgb_topic:
            seg.add_rgb(stamp, image_to_numpy(msg).copy())
