"""LiDAR 3D detection stages outside the network (ROS-free, numpy, deterministic).

Named by pipeline stage as in Autoware's CenterPoint and OpenPCDet: ``pillarize`` (range crop, pillar grouping, the
decorated point features), ``anchors`` (anchor grid of an anchor head), ``box_coder`` (residual box coding and the
direction classifier), ``centerpoint`` (decoding of a centre head), ``nms`` (rotated bird's-eye-view NMS with exact
rectangle intersection, circle NMS) and ``postprocess`` (score thresholds, top-k, NMS, final boxes).

Boxes are ``(x, y, z, dx, dy, dz, yaw)`` in the LiDAR frame (REP-103: x forward, y left, z up), metres and radians:
``(x, y, z)`` the box centre, ``dx`` the length along the box's heading, ``dy`` its width, ``dz`` its height, ``yaw``
the heading about +z, counter-clockwise from +x.
"""
