"""LiDAR 3D detection (ROS-free): a point cloud in, boxes out, with PointPillars or CenterPoint-pillar.

Data flow::

    cloud --preprocess.point_features--> (N, 4) x y z intensity --crop/paint/pillarize/decorate--> pillars
      --encoder (graph 1)--> embeddings --scatter--> BEV canvas --backbone_head (graph 2)--> head maps
      --decode/nms--> Detections                                          (pipeline.PillarDetector, every stage timed)

Rooms: ``pipeline`` (the stages; receives its backends), ``dynamic`` (the same stages with dynamic pillars in
numpy: ``centerpoint_pillar_nuscenes``), ``preprocess`` (sensor arrays -> the encoder's input),
``artifacts`` (weights -> the two ONNX graphs -> INT8 -> backends: ``build_backends``, ``build_detector``),
``quantize`` (INT8 calibration through the pipeline's own ``network_inputs``), ``metrics`` (AP accumulators that
merge). Stage modules, named as in Autoware's CenterPoint and OpenPCDet: ``pillarize`` (range crop, pillar grouping,
the decorated point features), ``painting`` (PointPainting), ``anchors`` (anchor grid of an anchor head),
``box_coder`` (residual box coding and the direction classifier), ``centerpoint`` (decoding of a centre head),
``nms`` (rotated bird's-eye-view NMS with exact rectangle intersection, circle NMS) and ``postprocess`` (score
thresholds, top-k, NMS, final boxes). Import the rooms by their module path: this package re-exports nothing, because
``core/models/pointpillars.py`` imports the stage modules and ``pipeline`` imports it (a re-export here would be a
cycle).

Boxes are ``(x, y, z, dx, dy, dz, yaw)`` in the LiDAR frame (REP-103: x forward, y left, z up), metres and radians:
``(x, y, z)`` the box centre, ``dx`` the length along the box's heading, ``dy`` its width, ``dz`` its height, ``yaw``
the heading about +z, counter-clockwise from +x.
"""
