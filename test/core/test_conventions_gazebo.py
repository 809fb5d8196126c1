"""The Gazebo convention's shipped files agree: config/gazebo/bridge.yaml bridges exactly what the gazebo preset's bag
player replays (the bag stands in for the bridge) with the types a gazebo-convention bag records, every node input of
the preset is bridged, and config/gazebo/robot_sensors.sdf parses, names the sensors whose topics the bridge maps and
has the sim rig's intrinsics and mounting."""
from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from ros_mmfusion import presets
from ros_mmfusion.core.sim.conventions import get_convention
from ros_mmfusion.core.sim.conventions.gazebo import MODEL, SENSORS, sensor_frame
from ros_mmfusion.core.sim.recorder import convention_table
from ros_mmfusion.core.sim.sensors import PLATFORMS, make_rig

ROOT = Path(__file__).parents[2]
CONVENTION = get_convention("gazebo")


@pytest.fixture(scope="module")
def bridge() -> list[dict]:
    entries = yaml.safe_load((ROOT / "config" / "gazebo" / "bridge.yaml").read_text())
    for entry in entries:
        assert set(entry) == {"ros_topic_name", "gz_topic_name", "ros_type_name", "gz_type_name", "direction"}
        assert entry["direction"] in ("GZ_TO_ROS", "ROS_TO_GZ")
    return entries


@pytest.fixture(scope="module")
def sdf() -> dict[str, ET.Element]:
    model = ET.parse(ROOT / "config" / "gazebo" / "robot_sensors.sdf").getroot().find("model")
    assert model.get("name") == MODEL
    link = model.find("link")
    assert link.get("name") == "base_link"
    return {s.get("name"): s for s in link.findall("sensor")}


def test_the_bridge_publishes_exactly_what_the_preset_replays_with_the_recorded_types(bridge):
    preset = presets.load("gazebo", {"bag": "BAG"})
    player = next(n for n in preset.nodes if n.key == "bag_player")
    replayed = set(player.parameters["topics"])
    to_ros = {e["ros_topic_name"]: e["ros_type_name"] for e in bridge if e["direction"] == "GZ_TO_ROS"}
    # /clock: the simulator's time; /tf_static: robot_state_publisher's, not the bridge's
    assert set(to_ros) - {"/clock"} == replayed - {"/tf_static"}
    recorded = convention_table(CONVENTION)
    for topic in replayed:
        if topic in to_ros:
            assert recorded[topic][0] == to_ros[topic], topic
    inputs = {target for node in preset.nodes if node.key != "bag_player" for target in node.remappings.values()}
    produced = {"/segmentation/labels"}  # fusion_segmentation's output feeds detection3d's painting
    assert inputs - produced <= set(to_ros)
    assert to_ros["/clock"] == "rosgraph_msgs/msg/Clock"
    to_gz = [e for e in bridge if e["direction"] == "ROS_TO_GZ"]
    assert [(e["ros_topic_name"], e["gz_topic_name"], e["ros_type_name"]) for e in to_gz] == [
        ("/cmd_vel", f"/model/{MODEL}/cmd_vel", "geometry_msgs/msg/Twist")]


def _published(sensor: ET.Element) -> set[str]:
    """The Gazebo topics a sensor publishes: a camera-type sensor its image on <topic> and CameraInfo beside it,
    a gpu_lidar its cloud on <topic>/points (the LaserScan on <topic> is not bridged)."""
    topic = sensor.findtext("topic")
    if sensor.get("type") == "gpu_lidar":
        return {f"{topic}/points", topic}
    return {topic, topic.rsplit("/", 1)[0] + "/camera_info"}


def test_the_sdf_sensors_publish_what_the_bridge_maps_on_the_conventions_topics(sdf, bridge):
    assert set(sdf) == set(SENSORS.values())
    gz_sensor_topics = set().union(*(_published(s) for s in sdf.values()))
    sensor_entries = [e for e in bridge if e["gz_type_name"] in ("gz.msgs.Image", "gz.msgs.CameraInfo",
                                                                  "gz.msgs.PointCloudPacked")]
    assert {e["gz_topic_name"] for e in sensor_entries} <= gz_sensor_topics
    # the recorded topics of each suite sensor are the bridged topics of its SDF sensor
    for suite_topic, sensor in [("/camera/color/image_raw", "camera"), ("/camera/depth/image_rect_raw", "depth_camera"),
                                ("/thermal/image_raw", "thermal_camera")]:
        image = sdf[sensor].findtext("topic")
        ros = {e["gz_topic_name"]: e["ros_topic_name"] for e in bridge}
        assert ros[image] == CONVENTION.topic(suite_topic)
        info_suite = suite_topic.rsplit("/", 1)[0] + "/camera_info"
        assert ros[image.rsplit("/", 1)[0] + "/camera_info"] == CONVENTION.topic(info_suite)
    lidar_points = sdf["gpu_lidar"].findtext("topic") + "/points"
    assert {e["ros_topic_name"] for e in bridge if e["gz_topic_name"] == lidar_points} == {
        CONVENTION.topic("/lidar/points")}
    formats = {name: s.findtext("camera/image/format") for name, s in sdf.items() if s.find("camera") is not None}
    assert formats == {"camera": "R8G8B8", "depth_camera": "R_FLOAT32", "thermal_camera": "L16"}
    assert CONVENTION.encodings == {"/camera/color/image_raw": "rgb8", "/camera/depth/image_rect_raw": "32FC1",
                                    "/thermal/image_raw": "mono16"}
    thermal_plugin = sdf["thermal_camera"].find("plugin")
    assert float(thermal_plugin.findtext("resolution")) == 0.01  # kelvin per count: the suite's centikelvin
    for suite_frame, sensor in [("camera_color_optical_frame", "camera"), ("lidar_link", "gpu_lidar"),
                                ("thermal_optical_frame", "thermal_camera")]:
        assert CONVENTION.frame(suite_frame) == sensor_frame(sensor) == f"{MODEL}/base_link/{sensor}"


def test_the_sdf_sensors_have_the_sim_rigs_intrinsics_and_mounting(sdf):
    rig = make_rig("robot", 640, 480, beams=32)
    spec = PLATFORMS["robot"]
    for name in ("camera", "depth_camera", "thermal_camera"):
        cam = sdf[name].find("camera")
        hfov = float(cam.findtext("horizontal_fov"))
        width, height = int(cam.findtext("image/width")), int(cam.findtext("image/height"))
        assert (width, height) == (rig.color.camera.width, rig.color.camera.height)
        # Gazebo's pinhole: fx = fy = (W / 2) / tan(hfov / 2)
        assert width / 2 / math.tan(hfov / 2) == pytest.approx(rig.color.camera.k[0, 0], rel=1e-6)
        pose = [float(v) for v in sdf[name].findtext("pose").split()]
        assert pose[:3] == pytest.approx(list(spec["camera_xyz"]))
        assert pose[3:] == pytest.approx(list(spec["camera_rpy"]))
    lidar = sdf["gpu_lidar"].find("lidar")
    assert int(lidar.findtext("scan/vertical/samples")) == len(rig.lidar.elevations_rad)
    assert math.degrees(float(lidar.findtext("scan/vertical/min_angle"))) == pytest.approx(spec["elevation_deg"][0])
    assert math.degrees(float(lidar.findtext("scan/vertical/max_angle"))) == pytest.approx(spec["elevation_deg"][1])
    assert int(lidar.findtext("scan/horizontal/samples")) == rig.lidar.columns
    assert (float(lidar.findtext("range/min")), float(lidar.findtext("range/max"))) == spec["range"]
    pose = [float(v) for v in sdf["gpu_lidar"].findtext("pose").split()]
    assert pose[:3] == pytest.approx(list(spec["lidar_xyz"]))
