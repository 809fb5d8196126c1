"""vision_msgs/Detection3DArray -> numpy: the inverse of ``builders.detection3d_array`` for the evaluation side.

Boxes come back as ``(N, 7)`` ``(x, y, z, dx, dy, dz, yaw)`` in the message's ``header.frame_id`` (metres; yaw in
radians about +z, from ``bbox.center``'s orientation, roll and pitch ignored), the format of
``core/detection3d/metrics.py``.
"""
from __future__ import annotations

import numpy as np
from vision_msgs.msg import Detection3DArray

from ros_mmfusion.core.codec.boxes import quaternion_to_yaw


def detections_to_arrays(msg: Detection3DArray) -> tuple[np.ndarray, list[str], np.ndarray]:
    """``msg`` as ``(N, 7)`` float64 boxes, class names and ``(N,)`` scores. Each detection's class and score are
    those of its best-scoring hypothesis; a detection without hypotheses gets class ``""`` and score 0."""
    boxes, names, scores = [], [], []
    for det in msg.detections:
        c, q, size = det.bbox.center.position, det.bbox.center.orientation, det.bbox.size
        yaw = quaternion_to_yaw(np.array([q.x, q.y, q.z, q.w]))
        boxes.append([c.x, c.y, c.z, size.x, size.y, size.z, yaw])
        hyp = max(det.results, key=lambda r: r.hypothesis.score).hypothesis if det.results else None
        names.append(hyp.class_id if hyp is not None else "")
        scores.append(hyp.score if hyp is not None else 0.0)
    return np.asarray(boxes, np.float64).reshape(-1, 7), names, np.asarray(scores, np.float64)


def detections_2d_to_arrays(msg) -> tuple[np.ndarray, list[str], list[str]]:
    """A vision_msgs/Detection2DArray as ``(N, 4)`` image boxes (left, top, right, bottom; pixels), class names (of
    the best hypothesis, ``""`` without one) and ids."""
    boxes, names = [], []
    for det in msg.detections:
        c, sx, sy = det.bbox.center.position, det.bbox.size_x, det.bbox.size_y
        boxes.append([c.x - sx / 2.0, c.y - sy / 2.0, c.x + sx / 2.0, c.y + sy / 2.0])
        hyp = max(det.results, key=lambda r: r.hypothesis.score).hypothesis if det.results else None
        names.append(hyp.class_id if hyp is not None else "")
    return np.asarray(boxes, np.float64).reshape(-1, 4), names, [d.id for d in msg.detections]
