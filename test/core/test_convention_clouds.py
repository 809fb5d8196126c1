"""Driver and simulator point layouts (Gazebo gpu_lidar, Velodyne XYZIRT, Ouster): the recorded bytes have the
driver's PointField offsets and point_step, and our cloud decoder and the detector's point features read them back to
the suite's own points (padding skipped, extra fields ignored, unaligned and uint32 fields read)."""
from __future__ import annotations

import numpy as np
import pytest

from ros_mmfusion.core.codec.pointcloud import decode_cloud
from ros_mmfusion.core.detection3d.preprocess import point_features
from ros_mmfusion.core.sim.conventions._clouds import GAZEBO_GPU_LIDAR, OUSTER, VELODYNE, relayout, scan_fraction
from ros_mmfusion.core.sim.recorder import SimMessages
from ros_mmfusion.core.sim.simulator import Simulation

LAYOUTS = {
    "gazebo_gpu_lidar": (GAZEBO_GPU_LIDAR, 32, {"x": (0, 7), "y": (4, 7), "z": (8, 7), "intensity": (16, 7),
                                                "ring": (24, 4)}),
    "velodyne": (VELODYNE, 22, {"x": (0, 7), "y": (4, 7), "z": (8, 7), "intensity": (12, 7), "ring": (16, 4),
                                "time": (18, 7)}),
    "ouster": (OUSTER, 48, {"x": (0, 7), "y": (4, 7), "z": (8, 7), "intensity": (16, 7), "t": (20, 6),
                            "reflectivity": (24, 4), "ring": (26, 4), "ambient": (28, 4), "range": (32, 6)}),
}


@pytest.fixture(scope="module")
def suite():
    sim = Simulation("urban_day", size=(48, 36), beams=16)
    msgs = SimMessages(sim, "32FC1")
    frame = sim.frame(0)
    return sim, msgs, frame.lidar.points, msgs.cloud(frame.stamp_ns, "lidar_link", frame.lidar.points)


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_a_driver_layout_has_its_offsets_and_reads_back_to_the_suites_points(suite, name):
    sim, msgs, points, message = suite
    dtype, point_step, offsets = LAYOUTS[name]
    ours = relayout(message, msgs, dtype, scan_period_s=0.1, beams=16, ring_top_first=name == "ouster")
    assert ours.point_step == point_step and ours.row_step == point_step * len(points)
    assert {f.name: (f.offset, f.datatype) for f in ours.fields} == offsets
    assert (ours.header.frame_id, ours.header.stamp) == (message.header.frame_id, message.header.stamp)
    cloud = decode_cloud(ours.height, ours.width, ours.fields, ours.is_bigendian, ours.point_step, ours.row_step,
                         np.frombuffer(bytes(ours.data), np.uint8))
    assert len(cloud) == len(points)
    for field in ("x", "y", "z", "intensity"):
        np.testing.assert_array_equal(cloud[field], points[field])
    expected_ring = 15 - points["ring"] if name == "ouster" else points["ring"]
    np.testing.assert_array_equal(cloud["ring"], expected_ring)
    # what the detector feeds its network: identical to the suite's own layout
    np.testing.assert_array_equal(point_features(cloud), point_features(points))
    fraction = scan_fraction(points)
    if "time" in cloud.dtype.names:
        np.testing.assert_allclose(cloud["time"], fraction * 0.1, atol=1e-7)
    if "t" in cloud.dtype.names:
        assert cloud["t"].dtype == np.uint32 and cloud["t"].max() <= 100_000_000
        np.testing.assert_allclose(cloud["t"], fraction * 1e8, atol=1)
    if "range" in cloud.dtype.names:
        distance = np.sqrt(points["x"].astype(np.float64) ** 2 + points["y"] ** 2 + points["z"] ** 2)
        np.testing.assert_allclose(cloud["range"], distance * 1000, atol=1)
