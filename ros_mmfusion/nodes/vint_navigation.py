"""``vint_navigation_node``: ViNT topological navigation: camera frames in, localisation and waypoints out.

Input (relative names, remap them): ``image`` (sensor_msgs/Image rgb8/bgr8/rgba8/bgra8; with ``image_transport``
``compressed`` a JPEG/PNG sensor_msgs/CompressedImage on ``image/compressed``), sampled into a context of
past frames at the model's frame rate (4 Hz for the released ViNT); ``odom`` (nav_msgs/Odometry): the distance
driven for ``localization: odometry_filter`` (the default), the robot pose for a path in the odometry frame and the
oracle hooks. Every frame the context takes (once the context is full) is scored against the nodes
of the localisation window of the topomap (``topomap_dir``, built with ``mmfusion topomap build``) or against one
goal image (``goal_image``). ``localization``: ``window`` localises as the ViNT deployment does (the argmin of the
window's temporal distances), ``odometry_filter`` keeps a belief along the route that the odometry moves and the
network's distances weigh (``localization.OdometryFilterLocalizer``; a topomap without poses falls back to the
window with a WARN finding). Outputs, stamped with that camera frame's stamp:

* ``navigation/path`` (nav_msgs/Path): the predicted waypoints towards the current subgoal, metres, in ``path_frame``
  (default ``odom``, the odometry frame); ``""`` or ``base_frame`` keeps the robot body frame they are predicted in;
* ``navigation/waypoint`` (geometry_msgs/PoseStamped): the waypoint to follow (``waypoint_index``), heading included,
  in the path's frame.

In another frame than the body's, the waypoints are moved with the robot pose at the frame's stamp: from the ``odom``
input when its messages are in ``path_frame`` (interpolated to the stamp), else from TF (``path_frame <- base_frame``).
No pose (no odometry near the stamp and no transform): a throttled log line, a WARN finding ``tf:path_frame`` and
the frame's outputs skipped.
* ``navigation/goal_reached`` (std_msgs/Bool) and ``navigation/closest_node`` (std_msgs/Int32, the localised node).

``distance_source: odometry`` replaces the model's temporal distances by ground-truth ones computed from the live
odometry and the topomap's recorded poses (``localization.odometry_temporal_distances``; the model still predicts
the waypoints): a documented test hook for driving the pipeline with known localisation where untrained weights
cannot localise, reported as a WARN finding. See docs/navigation.md.
"""
from __future__ import annotations

import math
import time
from collections import deque

import numpy as np
from geometry_msgs.msg import PoseStamped
from nav_msgs.msg import Odometry, Path
from std_msgs.msg import Bool, Int32

from ros_mmfusion.core.codec.boxes import quaternion_to_yaw
from ros_mmfusion.core.errors import ConfigError, MessageFormatError
from ros_mmfusion.core.evaluation.topics import EvaluationTopics
from ros_mmfusion.core.geometry import Transform
from ros_mmfusion.core.health import Level
from ros_mmfusion.core.inference.int8 import choose_backend
from ros_mmfusion.core.inference.params import EnginesBuilt, build_only_line, check_precision, inference_params
from ros_mmfusion.core.models.vint import VINT_VARIANTS
from ros_mmfusion.core.navigation.artifacts import (
    DEFAULT_VARIANT,
    DEFAULT_WAYPOINT_SPACING,
    SPLIT_BACKENDS,
    build_backend,
    build_split_backend,
    navigation_model,
)
from ros_mmfusion.core.navigation.localization import (
    OdometryFilterLocalizer,
    OdometrySample,
    odometry_oracle,
    odometry_robot_pose,
    odometry_waypoints,
    planar_pose_transform,
    transform_waypoints,
)
from ros_mmfusion.core.navigation.pipeline import LOCALIZATIONS, NavigationPolicy, NavigationResult
from ros_mmfusion.core.navigation.topomap import load_topomap, topomap_from_goal_image
from ros_mmfusion.core.params import ParamSpec
from ros_mmfusion.core.tf_buffer import TF_PARAMS
from ros_mmfusion.paths import share_dir
from ros_mmfusion.ros.builders import header as make_header
from ros_mmfusion.ros.builders import path_msg
from ros_mmfusion.ros.entry import check_path_parameters, run_node
from ros_mmfusion.ros.image import rgb_from_msg, transport_param
from ros_mmfusion.ros.node_base import MmfusionNode, stamp_to_ns


class VintNavigationNode(MmfusionNode):
    EVALUATION = EvaluationTopics("image", ("image",), ("navigation/path",), inputs=("image",),
                                  path="navigation/path", closest_node="navigation/closest_node", odom="odom")
    PARAMS = (
        ParamSpec("topomap_dir", "", "Topological map directory (topomap.yaml + numbered images, or an upstream "
                  "ViNT topomap); leave empty when goal_image is set.", read_only=True),
        ParamSpec("goal_image", "", "Single-goal-image mode: navigate towards this image file instead of a topomap.",
                  read_only=True),
        ParamSpec("goal_node", -1, "Goal node of the topomap; negative counts from the end (-1: the last node).",
                  read_only=True),
        ParamSpec("radius", 4, "Nodes either side of the closest node scored each step (the localisation window).",
                  minimum=0, maximum=100),
        ParamSpec("close_threshold", 3.0, "Temporal distance (frames) within which the closest node counts as "
                  "reached, so the robot heads for the next node (single goal image: the goal is reached).",
                  minimum=0.0),
        ParamSpec("localization", "odometry_filter", "'window': the ViNT deployment's (the closest node is the "
                  "argmin of the window's temporal distances each step); 'odometry_filter': a belief along the route "
                  "moved by the odom input's driven distance and weighed by the temporal distances (needs a topomap "
                  "with poses; docs/navigation.md).", choices=LOCALIZATIONS, read_only=True),
        ParamSpec("odometry_motion_noise", 0.2, "odometry_filter: the belief's blur per step as a fraction of the "
                  "distance driven (wheel slip, odometry error).", minimum=0.0, maximum=5.0, read_only=True),
        ParamSpec("waypoint_index", 2, "Which predicted waypoint (0-based, of 5) is published to follow.",
                  minimum=0, maximum=4),
        ParamSpec("waypoint_spacing", DEFAULT_WAYPOINT_SPACING, "Metres per unit of the model's normalised waypoints "
                  "(the deployment's max_v / frame_rate: 0.2 m/s / 4 Hz). While it keeps this default, a model "
                  "package's waypoint_spacing applies.", minimum=1e-4, maximum=10.0),
        ParamSpec("model_package", "", "Model package directory (model.yaml + weights, task navigation), absolute or "
                  "relative to the package share directory: it decides the network, weights, input size and frame "
                  "rate, so 'variant' and 'weights' must then be empty. Empty: 'variant' + 'weights'.",
                  read_only=True),
        ParamSpec("variant", "", f"ViNT configuration without a model package (empty: {DEFAULT_VARIANT}).",
                  choices=("", *VINT_VARIANTS), read_only=True),
        ParamSpec("weights", "", "ViNT weights without a model package: our state_dict or the released vint.pth; '' "
                  "runs untrained random weights (plumbing only, reported as WARN).", read_only=True),
        ParamSpec("onnx", "", "ONNX file for the onnxruntime backend; '' exports into the cache on first use.",
                  read_only=True),
        *inference_params("onnxruntime-int8: the QDQ model, calibrated on synthetic corridor frames on first use; "
                          "tensorrt: the engine scores 1..2*radius+1 topomap nodes per batch (more in chunks)."),
        transport_param("image_transport", "the camera image"),
        ParamSpec("frame_rate", 0.0, "Context frames per second of stamp time (0: the model's, 4 Hz).", minimum=0.0,
                  maximum=100.0, read_only=True),
        ParamSpec("center_crop", False, "Centre-crop frames to 4:3 before resizing (the deployment does not).",
                  read_only=True),
        ParamSpec("base_frame", "base_link", "The robot body frame, the frame the waypoints are predicted in."),
        ParamSpec("path_frame", "odom", "frame_id of the published path and waypoint: the odometry frame (moved with "
                  "the odom input's pose, else TF); '' or base_frame: the body frame.", read_only=True),
        *TF_PARAMS,
        ParamSpec("distance_source", "model", "Temporal distances for localisation: 'model' (ViNT), or 'odometry' "
                  "(ground truth from the odom input and the topomap's poses: a test hook, not for deployment).",
                  choices=("model", "odometry"), read_only=True),
        ParamSpec("waypoint_source", "model", "Waypoints to follow: 'model' (ViNT), or 'odometry' (straight towards "
                  "the subgoal node's recorded pose, from the odom input: with distance_source 'odometry' the "
                  "closed-loop oracle, an upper bound for the controller; a test hook, not for deployment).",
                  choices=("model", "odometry"), read_only=True),
    )

    def __init__(self, **kwargs) -> None:
        super().__init__("vint_navigation", **kwargs)

    def configure(self) -> None:
        p = self.params
        if bool(p["topomap_dir"]) == bool(p["goal_image"]):
            raise ConfigError(f"{self.get_name()}: set exactly one of 'topomap_dir' and 'goal_image'")
        check_path_parameters(self, files=["goal_image", "weights"], directories=["topomap_dir"])
        check_path_parameters(self, directories=["model_package"], base=share_dir())
        self.model = navigation_model(p, self.get_name())
        source = "topomap_dir" if p["topomap_dir"] else "goal_image"
        try:
            if p["topomap_dir"]:
                topomap = load_topomap(p["topomap_dir"])
            else:
                topomap = topomap_from_goal_image(p["goal_image"])
                topomap.image(0)  # decodes now: a file that is no image fails here, not on every frame
        except ConfigError as exc:
            raise ConfigError(f"{self.get_name()}: parameter {source!r}: {exc}") from None
        check_precision(p["backend"], p["device"], p["precision"], self.get_name())
        choice = choose_backend(p["backend"], "navigation", p["precision"])
        if choice.plan is not None:  # INT8 asked for: say what this CPU runs
            self.log_throttled("int8_choice", "warn" if choice.declined else "info", choice.log_line())
        model = self.model
        if choice.backend in SPLIT_BACKENDS and not p["onnx"]:  # each context frame encoded once, its token reused
            backend = build_split_backend(choice.backend, model.variant, model.weights, p["device"], p["threads"])
        else:
            backend = build_backend(choice.backend, model.variant, model.weights, p["onnx"], p["device"],
                                    p["threads"], precision=choice.precision,
                                    cache_dir=p["engine_cache_dir"] or None, window=2 * p["radius"] + 1)
        if p["build_only"]:
            raise EnginesBuilt(build_only_line("navigation", backend.info.detail))
        self.policy = NavigationPolicy(
            topomap, backend, variant=model.variant, goal_node=p["goal_node"], radius=p["radius"],
            close_threshold=p["close_threshold"], waypoint_index=p["waypoint_index"],
            waypoint_spacing=self.waypoint_spacing(), frame_rate_hz=p["frame_rate"], center_crop=p["center_crop"],
            localization=self.localization(topomap), motion_noise=p["odometry_motion_noise"])
        self.filtering = isinstance(self.policy.localizer, OdometryFilterLocalizer)  # not for one goal image
        # odometry pose (x, y, yaw) of the filter's last step (before the first: of the context's first frame)
        self.last_pose: np.ndarray | None = None
        self.node_poses = None
        self.odometry: deque[OdometrySample] = deque(maxlen=200)
        self.odometry_frame = ""  # frame_id of the odometry messages
        oracles = [name for name in ("distance_source", "waypoint_source") if p[name] == "odometry"]
        if oracles or self.path_frame or self.filtering:  # the oracles and the filter need odometry; a path in the
            # odometry frame uses it if it comes
            self.sensor_subscription(Odometry, "odom", self.on_odometry, name="odom",
                                     required=bool(oracles) or self.filtering)
        if self.path_frame:
            self.enable_tf()  # the pose where no odometry in path_frame comes
        if oracles:
            self.node_poses = topomap.poses_xy_yaw()  # ConfigError when the map has no poses
            self.set_finding("distance_source", Level.WARN, "odometry oracle instead of the model "
                             f"({', '.join(f'{n}: odometry' for n in oracles)}): a test hook, not a deployment")
        self.path_pub = self.output_publisher(Path, "navigation/path")
        self.waypoint_pub = self.output_publisher(PoseStamped, "navigation/waypoint")
        self.goal_pub = self.output_publisher(Bool, "navigation/goal_reached")
        self.node_pub = self.output_publisher(Int32, "navigation/closest_node")
        self.image_subscription("image", p["image_transport"], self.on_image, name="image")
        self.last_result: NavigationResult | None = None
        mode = f"topomap {p['topomap_dir']}" if p["topomap_dir"] else f"goal image {p['goal_image']}"
        self.get_logger().info(f"ViNT {model.name} on {self.policy.backend.info.detail}; {mode}: "
                               f"{len(topomap)} node(s), goal node {self.policy.localizer.goal_node}, "
                               f"context {self.policy.context_size + 1} frames at {self.policy.frame_rate_hz:g} Hz, "
                               f"input {model.variant.image_size[0]}x{model.variant.image_size[1]}, waypoint spacing "
                               f"{self.policy.waypoint_spacing:g} m")
        self.report_model("navigation", model.origin, self.policy.backend.info.detail, p["device"])

    def localization(self, topomap) -> str:
        """The ``localization`` parameter, or ``window`` for a topomap without poses (an upstream ViNT topomap; a
        WARN finding says so, the node still navigates). A single goal image: ``make_localizer`` takes the window."""
        wanted = self.params["localization"]
        if wanted == "odometry_filter" and len(topomap) > 1 and not topomap.has_poses:
            text = (f"topomap {topomap.directory} has no poses (built without an odometry topic): the odometry "
                    "filter cannot run, localising with the deployment's window instead")
            self.get_logger().warn(text)
            self.set_finding("localization", Level.WARN, text)
            return "window"
        return wanted

    @property
    def path_frame(self) -> str:
        """The frame of the published path, or "" for the body frame (``base_frame``) the waypoints are in."""
        frame = self.params["path_frame"]
        return "" if frame == self.params["base_frame"] else frame

    def waypoint_spacing(self) -> float:
        """Metres per normalised waypoint unit: the parameter, or the model package's while the parameter keeps its
        default."""
        return self.param_or_package("waypoint_spacing", self.model.waypoint_spacing if self.model.package else None)

    def on_time_jump(self) -> None:
        self.policy.reset()
        self.odometry.clear()
        self.last_pose = None

    def on_odometry(self, msg: Odometry) -> None:
        self.odometry_frame = msg.header.frame_id
        q = msg.pose.pose.orientation
        pose = np.array([msg.pose.pose.position.x, msg.pose.pose.position.y,
                         quaternion_to_yaw((q.x, q.y, q.z, q.w))])
        twist = msg.twist.twist
        self.odometry.append((stamp_to_ns(msg.header.stamp), pose, (twist.linear.x, twist.linear.y),
                              twist.angular.z))

    def on_image(self, msg) -> None:
        started = time.perf_counter()
        stamp = stamp_to_ns(msg.header.stamp)
        rgb = rgb_from_msg(msg, limits=self.limits)
        added = self.policy.add_frame(stamp, rgb)
        if added and self.filtering and self.last_pose is None:
            # the filter starts at the start node where the context's first frame was seen: the distance driven
            # while the context fills moves it at the first step (a robot already driving when the node starts);
            # no odometry there yet: from the first step on, as before
            try:
                self.last_pose = odometry_robot_pose(self.odometry, stamp)
            except MessageFormatError:
                pass
        if not added or not self.policy.ready:
            return
        if not self.has_subscribers((self.path_pub, self.waypoint_pub, self.goal_pub, self.node_pub)):
            return
        p = self.params
        self.policy.localizer.radius = p["radius"]
        self.policy.localizer.close_threshold = p["close_threshold"]
        self.policy.waypoint_index, self.policy.waypoint_spacing = p["waypoint_index"], self.waypoint_spacing()
        distance_fn = waypoint_fn = None
        if p["distance_source"] == "odometry":
            distance_fn = odometry_oracle(self.odometry, stamp, self.node_poses, self.policy.waypoint_spacing)
        if p["waypoint_source"] == "odometry":
            robot, nodes = odometry_robot_pose(self.odometry, stamp), self.node_poses
            count = self.policy.variant.config.len_traj_pred
            spacing = self.policy.waypoint_spacing

            def waypoint_fn(subgoal: int) -> np.ndarray:
                return odometry_waypoints(robot, nodes[subgoal], count, spacing)
        if self.filtering:
            self.move_filter(stamp)
        result = self.policy.step(distance_fn, waypoint_fn)
        if self.publish(result, msg.header.stamp):
            self.report_timing(stamp, started)

    def move_filter(self, stamp_ns: int) -> None:
        """The odometry filter's motion update: the distance driven since its last step (signed along the heading).
        Without odometry near the frame the belief stays where it is (a throttled WARN): the model alone moves it."""
        try:
            pose = odometry_robot_pose(self.odometry, stamp_ns)
        except MessageFormatError as exc:
            self.log_throttled("filter_odometry", "warn", f"odometry filter: {exc}; the belief does not move")
            self.set_finding("odometry_filter", Level.WARN, f"no odometry for the filter's motion update: {exc}")
            return
        self.clear_finding("odometry_filter")
        if self.last_pose is not None:
            dx, dy = pose[0] - self.last_pose[0], pose[1] - self.last_pose[1]
            forward = dx * math.cos(self.last_pose[2]) + dy * math.sin(self.last_pose[2])
            self.policy.moved(math.copysign(math.hypot(dx, dy), forward))
        self.last_pose = pose

    def body_to_path_frame(self, stamp_ns: int) -> Transform | None:
        """``T_path_base`` at ``stamp_ns``: the odometry pose there when the odometry is in ``path_frame``, else TF;
        None (logged, a finding, the frame skipped) when neither gives it."""
        if self.odometry and self.odometry_frame == self.path_frame:
            try:
                return planar_pose_transform(odometry_robot_pose(self.odometry, stamp_ns))
            except MessageFormatError:  # no odometry near this stamp: TF may still have the pose
                pass
        return self.lookup_transform(self.path_frame, self.params["base_frame"], stamp_ns, "path_frame",
                                     input_name="image")

    def publish(self, result: NavigationResult, stamp) -> bool:
        """Publish ``result`` at ``stamp`` in the path's frame; False when the frame has no pose there (skipped)."""
        frame = self.path_frame or self.params["base_frame"]
        waypoints, chosen_waypoint = result.waypoints, result.chosen_waypoint
        if self.path_frame:
            T = self.body_to_path_frame(stamp_to_ns(stamp))
            if T is None:
                return False
            waypoints = transform_waypoints(waypoints, T)
            chosen_waypoint = transform_waypoints(chosen_waypoint[None], T)[0]
        header = make_header(stamp, frame)
        yaws = np.arctan2(waypoints[:, 3], waypoints[:, 2])
        path = path_msg(header, waypoints[:, :2], yaws)
        chosen = path_msg(header, chosen_waypoint[None, :2],
                          [math.atan2(chosen_waypoint[3], chosen_waypoint[2])]).poses[0]
        self.path_pub.publish(path)
        self.waypoint_pub.publish(chosen)
        self.goal_pub.publish(Bool(data=bool(result.goal_reached)))
        self.node_pub.publish(Int32(data=int(result.closest_node)))
        if result.goal_reached and not (self.last_result and self.last_result.goal_reached):
            self.get_logger().info(f"goal node {self.policy.localizer.goal_node} reached")
        self.last_result = result
        return True


def main(args: list[str] | None = None) -> int:
    return run_node(VintNavigationNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
