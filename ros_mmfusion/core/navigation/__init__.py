"""ViNT navigation over a topological map (ROS-free), as the ViNT deployment does it.

Data flow: camera frame (R,G,B) -> :mod:`.preprocess` (the deployment's ``transform_images``) -> the context queue
at the model's frame rate (:mod:`.sampling`) -> ViNT on the context and the goal images of the localisation window
(:mod:`.pipeline`, on a backend from :mod:`.artifacts`) -> temporal distances -> closest node and subgoal
(:mod:`.localization`, over the :mod:`.topomap`) -> metric waypoints -> velocity commands (:mod:`.control`).

Rooms, one module each:

* :mod:`.pipeline`: :class:`~.pipeline.NavigationPolicy`, the stages in ViNT's vocabulary; it receives its backend;
* :mod:`.preprocess`: camera frames -> the ``obs_img`` / ``goal_img`` tensors, exactly as the deployment prepares them;
* :mod:`.artifacts`: weights -> ViNT -> ONNX -> INT8 -> Backend, the one place that resolves ViNT's model files
  (``build_backend(...)``, then ``NavigationPolicy(topomap, backend, ...)``);
* :mod:`.quantize`: INT8 calibration contexts fed through the pipeline's own stages, and the INT8 accuracy check;
* :mod:`.metrics`: localisation accuracy and waypoint ADE/FDE against ground truth, in accumulators that merge;
* :mod:`.sampling`: :class:`PeriodicSampler`, which keeps one frame every period of stamp time (the context queue
  at the model's frame rate, and the topomap's one node every ``dt`` seconds);
* :mod:`.topomap`: the topological map on disk (numbered images + ``topomap.yaml`` with stamps and odometry poses),
  :func:`build_topomap` from a rosbag2, :func:`load_topomap` (also reads upstream image-only topomaps);
* :mod:`.localization`: the candidate window around the current node, closest-node update, subgoal choice with the
  close threshold, goal reached (:class:`TopomapLocalizer`), and the odometry oracle for temporal distances
  (:func:`odometry_oracle`);
* :mod:`.control`: the deployment's waypoint-to-velocity law with velocity and acceleration limits, a waypoint
  timeout and a stop at the goal (:class:`WaypointFollower`).

The pipeline, artifacts, quantize and metrics modules are imported by their full path (they need the network,
whose model file imports :mod:`.preprocess`); this package re-exports the light, torch-free entry points only.
See docs/navigation.md.
"""
from ros_mmfusion.core.navigation.control import (
    VelocityCommand,
    VelocityLimits,
    WaypointFollower,
    clip_angle,
    limit_acceleration,
    vint_velocity,
)
from ros_mmfusion.core.navigation.localization import (
    LocalizationStep,
    OdometryFilterLocalizer,
    TopomapLocalizer,
    candidate_window,
    choose_subgoal,
    extrapolate_pose,
    odometry_oracle,
    odometry_temporal_distances,
)
from ros_mmfusion.core.navigation.sampling import PeriodicSampler
from ros_mmfusion.core.navigation.topomap import (
    MANIFEST,
    Topomap,
    TopomapNode,
    build_topomap,
    load_topomap,
    topomap_from_goal_image,
    topomap_from_images,
)

__all__ = [
    "MANIFEST",
    "LocalizationStep",
    "PeriodicSampler",
    "Topomap",
    "OdometryFilterLocalizer",
    "TopomapLocalizer",
    "TopomapNode",
    "VelocityCommand",
    "VelocityLimits",
    "WaypointFollower",
    "build_topomap",
    "candidate_window",
    "choose_subgoal",
    "clip_angle",
    "extrapolate_pose",
    "limit_acceleration",
    "load_topomap",
    "odometry_oracle",
    "odometry_temporal_distances",
    "topomap_from_goal_image",
    "topomap_from_images",
    "vint_velocity",
]
