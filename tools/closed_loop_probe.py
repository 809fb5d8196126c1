"""Diagnose a ViNT package in the closed loop without ROS: ``SimulatedRobot`` + ``NavigationPolicy`` +
``WaypointFollower`` in one Python loop (the ``closed_loop`` preset's pieces, minus DDS), printing every 0.5 s the
localised node, the chosen waypoint, the robot's sideways offset and heading error against the scripted route.

    python tools/closed_loop_probe.py --package models/vint_reduced_corridor --topomap runs/corridor/topomap_seed201 \
        --seed 201 [--lateral 0.1] [--seconds 20]

The topomap comes from ``mmfusion closed-loop`` (its ``topomap_seed<N>`` directories) or ``mmfusion topomap build``.
"""
from __future__ import annotations

import argparse
import math


def main() -> int:
    from ros_mmfusion.core.navigation.artifacts import NavigationModel, build_backend
    from ros_mmfusion.core.navigation.control import VelocityLimits, WaypointFollower
    from ros_mmfusion.core.navigation.pipeline import NavigationPolicy
    from ros_mmfusion.core.navigation.topomap import load_topomap
    from ros_mmfusion.core.sim.robot import DriveLimits, SimulatedRobot

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package", required=True)
    parser.add_argument("--topomap", required=True)
    parser.add_argument("--scenario", default="indoor_corridor_pass2")
    parser.add_argument("--seed", type=int, default=201)
    parser.add_argument("--lateral", type=float, default=0.0, help="start offset to the left (m)")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--localization", default="odometry_filter", choices=("window", "odometry_filter"),
                        help="as the node's parameter (the filter moves with the simulated odometry)")
    args = parser.parse_args()
    model = NavigationModel.from_package(args.package)
    policy = NavigationPolicy(load_topomap(args.topomap), build_backend("onnxruntime", model.variant, model.weights),
                              variant=model.variant, waypoint_spacing=model.waypoint_spacing,
                              localization=args.localization)
    robot = SimulatedRobot(args.scenario, args.seed, (160, 120), start_offset=(0.0, args.lateral, 0.0),
                           limits=DriveLimits(max_linear=1.0))
    follower = WaypointFollower(VelocityLimits(1.0, 0.4, 0.5, 1.0), 0.25, 1.0)  # the param files' controller
    route, dt, next_frame, next_print, last_xy = robot.sim.ego.route, 0.02, 0.0, 0.0, None
    while robot.t < args.seconds:
        t = robot.t
        if t + 1e-9 >= next_frame:
            frame = robot.render()
            policy.add_frame(frame.stamp_ns, frame.camera.rgb)
            next_frame += 0.25
            if policy.ready:
                xy = robot.robot.T_odom_base().translation[:2]
                if last_xy is not None:  # the odometry's distance driven (forward only here)
                    policy.moved(float(math.hypot(*(xy - last_xy))))
                last_xy = xy
                result = policy.step()
                follower.on_waypoint(result.chosen_waypoint, t)
                follower.on_goal_reached(result.goal_reached)
                if t >= next_print:
                    s = robot.robot.state
                    rx, ry, _, ryaw = route.pose(robot.start_time + t)
                    side = -(s.x - rx) * math.sin(ryaw) + (s.y - ry) * math.cos(ryaw)
                    print(f"t={t:5.2f} s node={result.closest_node:3d} waypoint=({result.chosen_waypoint[0]:.2f}, "
                          f"{result.chosen_waypoint[1]:+.2f}) m offset={side:+.2f} m heading error="
                          f"{math.remainder(s.yaw - ryaw, 2 * math.pi):+.2f} rad v={s.linear:.2f} w={s.angular:+.2f}")
                    next_print += 0.5
                if result.goal_reached:
                    print(f"goal reached at t={t:.2f} s")
                    return 0
        command = follower.command(t)
        robot.set_command(command.linear, command.angular)
        robot.step(dt)
        if robot.robot.collisions:
            print(f"collision with {robot.last_hit} at t={robot.t:.2f} s")
            return 1
    print("time limit")
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
