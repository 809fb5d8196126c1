"""Every node of the suite: key -> (module, class). Pure data, read by setup.py (console scripts), ``mmfusion run``
and the launch files, so a node is registered in exactly one place. The console script is ``<key>_node``.
"""

NODES: dict[str, tuple[str, str]] = {
    "bag_player": ("ros_mmfusion.nodes.bag_player", "BagPlayerNode"),
    "lidar_depth": ("ros_mmfusion.nodes.lidar_depth", "LidarDepthNode"),
    "fusion_segmentation": ("ros_mmfusion.nodes.fusion_segmentation", "FusionSegmentationNode"),
    "detection3d": ("ros_mmfusion.nodes.detection3d", "Detection3DNode"),
    "vint_navigation": ("ros_mmfusion.nodes.vint_navigation", "VintNavigationNode"),
    "waypoint_controller": ("ros_mmfusion.nodes.waypoint_controller", "WaypointControllerNode"),
    "sim_robot": ("ros_mmfusion.nodes.sim_robot", "SimRobotNode"),
}
