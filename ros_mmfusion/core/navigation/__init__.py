"""ViNT navigation over a topological map (ROS-free), as the ViNT deployment does it.

Stages, one module each:

* :mod:`.sampling`: :class:`PeriodicSampler`, which keeps one frame every period of stamp time (the context buffer
  at the model's frame rate, and the topomap's one node every ``dt`` seconds);
* :mod:`.topomap`: the topological map on disk (numbered images + ``topomap.yaml`` with stamps and odometry poses),
  :func:`build_topomap` from a rosbag2, :func:`load_topomap` (also reads upstream image-only topomaps);
* :mod:`.localization`: the candidate window around the current node, closest-node update, subgoal choice with the
  close threshold, goal reached (:class:`TopomapLocalizer`), and the odometry oracle for temporal distances;
* :mod:`.policy`: :class:`NavigationPolicy`, the pipeline over an inference backend: context -> batched distances
  and waypoints for every candidate -> localisation -> metric waypoints and the chosen waypoint;
* :mod:`.control`: the deployment's waypoint-to-velocity law with velocity and acceleration limits, a waypoint
  timeout and a stop at the goal (:class:`WaypointFollower`).

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
    TopomapLocalizer,
    candidate_window,
    choose_subgoal,
    extrapolate_pose,
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
)

__all__ = [
    "MANIFEST",
    "LocalizationStep",
    "PeriodicSampler",
    "Topomap",
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
    "odometry_temporal_distances",
    "topomap_from_goal_image",
    "vint_velocity",
]
