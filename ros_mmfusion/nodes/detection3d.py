"""``detection3d_node``: LiDAR PointCloud2 -> 3D boxes (PointPillars / CenterPoint-pillar), optionally PointPainted.

Inputs (relative names, remap them): ``points`` (sensor_msgs/PointCloud2, any field layout with ``x``, ``y``, ``z``
and ``intensity``; a cloud without intensity is malformed), and with ``painting`` on, ``segmentation/labels``
(sensor_msgs/Image mono8/mono16 class ids, e.g. fusion_segmentation_node's) and ``camera_info`` (the labels'
camera). The cloud and the labels are paired by an approximate-time synchronizer; the labels are optional with a
``painting_timeout``: without them the node keeps detecting with every point painted "unseen" (the output of the
unpainted checkpoint for a zero-initialised painted model) and reports WARN.

Several cameras paint at once (``paint_cameras``: camera namespaces, e.g. nuScenes' six): the node then takes
``<NS>/segmentation/labels`` and ``<NS>/camera_info`` for each NS, pairs the cloud with every camera's labels (each
optional with the same timeout) and paints each point from the first camera in the listed order that sees it
(core/detection3d/painting.py ``MultiCameraScores``); a camera whose labels or CameraInfo are missing paints nothing.

The painting extrinsic (camera <- LiDAR) comes from TF (the labels' frame <- the cloud's frame at the cloud's stamp;
with ``paint_fixed_frame``, e.g. ``map``, camera at the labels' stamp <- fixed frame <- LiDAR at the cloud's stamp,
which follows the ego motion between a camera's and the LiDAR's stamps as nuScenes' calibration does) unless the
parameters give it (``extrinsics_source``, core/extrinsics.py; with several cameras only ``calibration_file``, which
names each camera by its namespace). Outputs, stamped with the cloud's stamp,
boxes in ``output_frame`` (empty: the cloud's frame; else moved there through TF at the cloud's stamp, kept upright;
a missing or stale transform skips the cloud with a WARN): ``detections`` (vision_msgs/Detection3DArray:
class id string, score, box centre pose and size) and ``detections/markers`` (visualization_msgs/MarkerArray: a
DELETEALL, then per box its edges in the class colour and a "class score" label). Inference is skipped while nobody
subscribes to either. Empty and all-NaN clouds are skipped with a log line and counted; more occupied pillars than
``max_pillars`` are truncated (as the reference does) and reported; both show in ``/diagnostics``.

With ``sweeps`` > 1 each detection sees the newest cloud plus earlier ones (within ``sweeps_max_age`` s), moved into
the newest cloud's frame through each cloud's pose in ``sweeps_frame`` (TF at each cloud's stamp), as nuScenes
models are fed (core/detection3d/sweeps.py; a cloud whose pose TF cannot give is skipped with a WARN). The merged
points carry a time-lag channel; the 4-feature pillar detectors read x, y, z, intensity of every point.

``model: centerpoint_pillar_nuscenes`` (or a package of that variant) runs OpenPCDet's nuScenes CenterPoint-PointPillar
(core/detection3d/dynamic.py): dynamic pillars (no ``max_pillars``), 5 features per point (x, y, z, intensity, the
time lag of the sweep: 0 with ``sweeps`` 1), intensity taken raw (0..255: ``intensity_scale`` 1 while the parameter
keeps its default), 10 nuScenes classes, not painted. Its boxes carry a velocity (vx, vy, m/s) that
vision_msgs/Detection3D has no field for: it is not published (``core`` results hold it).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from rcl_interfaces.msg import SetParametersResult
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header
from vision_msgs.msg import Detection3DArray
from visualization_msgs.msg import MarkerArray

from ros_mmfusion.core import labels
from ros_mmfusion.core.detection3d.artifacts import DEFAULT_DETECTOR, build_detector, detector_spec
from ros_mmfusion.core.detection3d.painting import (
    MultiCameraScores,
    PaintingScores,
    SegmentationScores,
    paint_class_ids,
)
from ros_mmfusion.core.detection3d.preprocess import point_features
from ros_mmfusion.core.detection3d.sweeps import SweepAccumulator
from ros_mmfusion.core.errors import ConfigError, MessageFormatError
from ros_mmfusion.core.evaluation.topics import EvaluationTopics
from ros_mmfusion.core.extrinsics import (
    EXTRINSIC_PARAMS,
    camera_from_lidar,
    changed_camera_from_lidar,
    extrinsics_from_parameters,
)
from ros_mmfusion.core.geometry import PinholeCamera, Transform
from ros_mmfusion.core.health import Level
from ros_mmfusion.core.inference.int8 import choose_backend
from ros_mmfusion.core.inference.params import EnginesBuilt, build_only_line, check_precision, inference_params
from ros_mmfusion.core.models.registry import detectors
from ros_mmfusion.core.params import ParamSpec
from ros_mmfusion.core.sync import ApproximateTimeSynchronizer
from ros_mmfusion.core.tf_buffer import TF_PARAMS, transform_boxes
from ros_mmfusion.paths import share_dir
from ros_mmfusion.ros.builders import box_markers, detection3d_array
from ros_mmfusion.ros.camera_info import camera_info_to_intrinsics
from ros_mmfusion.ros.entry import check_path_parameters, run_node
from ros_mmfusion.ros.image import image_to_numpy
from ros_mmfusion.ros.node_base import MmfusionNode, stamp_to_ns
from ros_mmfusion.ros.pointcloud import pointcloud2_to_array

FINDING_HOLD_S = 3.0
"""Seconds a finding about one bad frame (empty, all-NaN, truncated) stays in /diagnostics after the last one."""
LABEL_ENCODINGS = ("mono8", "mono16", "8UC1", "16UC1")


def _check_thresholds(values: list[float]) -> str | None:
    return None if all(0.0 <= v <= 1.0 for v in values) else "scores are probabilities: every value in [0, 1]"


def _check_range(values: list[float]) -> str | None:
    if len(values) != 6:
        return "needs 6 numbers: x_min y_min z_min x_max y_max z_max (all 0: the model's own range)"
    return None


def _check_paint_cameras(values: list[str]) -> str | None:
    if len(set(values)) != len(values):
        return "camera namespaces must be unique"
    if len(values) > 1 and any(not v.strip("/") for v in values):
        return "with several cameras every one needs a namespace ('' is the single camera without one)"
    bad = [v for v in values if v and not all(c.isalnum() or c in "_/~" for c in v)]
    return f"not a namespace: {bad}" if bad else None


@dataclass
class PaintCamera:
    """One painting camera: its ``namespace`` ('' for the single camera without one), the names of its two inputs,
    and what arrived on them (the latest CameraInfo as ``camera`` and its ``frame_id``)."""

    namespace: str
    labels_input: str
    info_input: str
    camera: PinholeCamera | None = None
    frame_id: str = ""
    camera_from_lidar: Transform | None = None  # from the parameters; None: from TF

    @classmethod
    def named(cls, namespace: str) -> PaintCamera:
        ns = namespace.strip("/")
        return cls(ns, f"{ns}/labels" if ns else "labels", f"{ns}/camera_info" if ns else "camera_info")

    def topic(self, name: str) -> str:
        """The input topic ``name`` of this camera, relative (resolved in the node's namespace, remappable)."""
        return f"{self.namespace}/{name}" if self.namespace else name


def output_class_name(name: str) -> str:
    """The ``class_id`` string published for a model class: the suite's label name when the class is one of its labels
    (``Car`` -> ``car``, as ``/ground_truth/boxes`` names them), else the model's own name."""
    try:
        return labels.label_by_name(name.lower()).name
    except ConfigError:
        return name


class Detection3DNode(MmfusionNode):
    # painting (off in the preset) would add labels and camera_info to the inputs
    EVALUATION = EvaluationTopics("points", ("points",), ("detections",), detections="detections", inputs=("points",))
    PARAMS = (
        ParamSpec("model_package", "", "Model package directory (model.yaml + weights, task detection3d), absolute or "
                  "relative to the package share directory: it decides the network, weights and painted classes, so "
                  "'model' and 'weights' must then be empty. Empty: 'model' + 'weights'.", read_only=True),
        ParamSpec("model", "", f"Detector configuration without a model package (empty: {DEFAULT_DETECTOR}).",
                  choices=("", *detectors(aliases=False)), read_only=True),
        ParamSpec("weights", "", "Checkpoint without a model package: OpenPCDet .pth ({'model_state': ...}), our "
                  "state_dict, or .npz; empty: random weights (tests and timing only, reported as WARN).",
                  read_only=True),
        ParamSpec("seed", 0, "Seed of the random weights when `weights` is empty.", minimum=0, read_only=True),
        ParamSpec("onnx_dir", "", "Directory holding (or receiving on first use) pillar_encoder.onnx and "
                  "backbone_head.onnx; empty: the cache directory.", read_only=True),
        *inference_params("onnxruntime-int8: both graphs quantized, calibrated on synthetic urban_day clouds on "
                          "first use; tensorrt: the pillar encoder's engine takes 1..max_pillars pillars."),
        ParamSpec("point_cloud_range", [0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
                  "Detection range x_min y_min z_min x_max y_max z_max (m, cloud frame); all 0: the model's own. "
                  "Extents must hold multiples of 8 pillars.", check=_check_range, read_only=True),
        ParamSpec("max_pillars", 0, "Most pillars encoded per frame; more are dropped and reported (0: the model's; "
                  "must be 0 with the dynamic-pillar centerpoint_pillar_nuscenes).",
                  minimum=0, maximum=1_000_000, read_only=True),
        ParamSpec("intensity_scale", 1.0 / 255.0, "Factor from the cloud's intensity to the model's (KITTI-trained "
                  "models expect 0..1; the synthetic world and many drivers publish 0..255). While it keeps this "
                  "default, a model package's intensity_scale applies (centerpoint_pillar_nuscenes: 1, raw 0..255).",
                  minimum=0.0),
        ParamSpec("score_thresholds", [0.1], "Minimum score: one value, or one per model class in its order "
                  "(car, pedestrian, cyclist). While it keeps this default, a model package's score_thresholds "
                  "apply.", check=_check_thresholds),
        ParamSpec("painting", False, "PointPainting: append segmentation scores of the painted classes to every point "
                  "(needs segmentation/labels and camera_info; with a model package it must be painted).",
                  read_only=True),
        ParamSpec("paint_classes", ["car", "pedestrian", "cyclist"], "Segmentation classes painted, one channel "
                  "each (names of the suite's label set); a model package's own paint_classes replace them.",
                  read_only=True),
        ParamSpec("paint_cameras", [""], "Painting cameras: one namespace each, painted in this order (a point seen "
                  "by several takes the first's scores); each takes <NS>/segmentation/labels and <NS>/camera_info. "
                  "[''] (default): one camera on segmentation/labels and camera_info.", check=_check_paint_cameras,
                  read_only=True),
        ParamSpec("paint_fixed_frame", "", "With TF extrinsics: the fixed frame (e.g. map, odom) through which the "
                  "camera at the labels' stamp <- LiDAR at the cloud's stamp is chained, following the ego motion "
                  "between the two stamps; empty: camera <- LiDAR at the cloud's stamp.", read_only=True),
        ParamSpec("painting_timeout", 0.5, "Seconds (of stamp time) without segmentation labels before detecting "
                  "without them (unpainted-equivalent) and reporting WARN.", minimum=0.01, read_only=True,
                  stamp_time=True),
        ParamSpec("sync_queue_size", 10, "Approximate-time synchronizer queue size per input.", minimum=1,
                  maximum=100, read_only=True),
        ParamSpec("sync_max_interval", 0.05, "Largest stamp difference (s) between a paired cloud and labels.",
                  minimum=0.0, maximum=1.0, read_only=True, stamp_time=True),
        *EXTRINSIC_PARAMS,
        *TF_PARAMS,
        ParamSpec("output_frame", "", "Frame of the published boxes and markers (e.g. base_link, map): moved there "
                  "through TF at the cloud's stamp, kept upright. Empty: the cloud's frame."),
        ParamSpec("marker_line_width", 0.05, "Box edge width in the markers (m).", minimum=0.001, maximum=1.0),
        ParamSpec("sweeps", 1, "LiDAR sweeps merged per detection: the newest cloud plus earlier ones moved into its "
                  "frame through each cloud's pose in sweeps_frame (TF), with a time-lag channel, as nuScenes models "
                  "are fed (earlier sweeps lose their points within 1 m of the sensor in x and y). 1: the cloud alone.",
                  minimum=1, maximum=20, read_only=True),
        ParamSpec("sweeps_frame", "odom", "Frame fixed in the world in which each sweep's pose is looked up (TF at "
                  "its stamp) when sweeps > 1.", read_only=True),
        ParamSpec("sweeps_max_age", 0.5, "Oldest earlier sweep merged (s of stamp time) when sweeps > 1.",
                  minimum=0.0, maximum=5.0, read_only=True, stamp_time=True),
    )

    def __init__(self, **kwargs) -> None:
        super().__init__("detection3d", **kwargs)

    def configure(self) -> None:
        check_path_parameters(self, files=["weights"] + (["calibration_file"] if self.params["painting"] else []),
                              directories=["model_package"], base=share_dir())
        p = self.params
        spec = detector_spec(p, self.get_name())
        config = spec.config
        self.spec = spec
        self.paint_ids = paint_class_ids(spec.paint_classes) if p["painting"] else ()
        check_precision(p["backend"], p["device"], p["precision"], self.get_name())
        choice = choose_backend(p["backend"], "detection3d", p["precision"])
        if choice.plan is not None:  # INT8 asked for: say what this CPU runs
            self.log_throttled("int8_choice", "warn" if choice.declined else "info", choice.log_line())
        self.detector = build_detector(spec, backend=choice.backend, device=p["device"], precision=choice.precision,
                                       threads=p["threads"], intensity_scale=self.intensity_scale(),
                                       score_thresholds=self.score_thresholds(),
                                       cache_dir=p["engine_cache_dir"] or None)
        if p["build_only"]:
            raise EnginesBuilt(build_only_line("detection3d", f"encoder: {self.detector.encoder.info.detail}; "
                                               f"backbone_head: {self.detector.backbone_head.info.detail}"))
        if spec.paint_channels and not p["painting"]:
            text = (f"model package {spec.package.name if spec.package else ''} is painted with "
                    f"{list(spec.paint_classes)} but 'painting' is false: every point gets the no-score value "
                    "(unpainted-equivalent accuracy)")
            self.get_logger().warn(text)
            self.set_finding("painting_off", Level.WARN, text)
        self.class_ids = [output_class_name(n) for n in self.detector.class_names]
        self.colors = {name: (r / 255.0, g / 255.0, b / 255.0) for name in self.class_ids
                       if name in labels.label_names() for r, g, b in [labels.label_by_name(name).color]}
        self.paint_cameras = [PaintCamera.named(ns) for ns in p["paint_cameras"]] if p["painting"] else []
        for cam in self.paint_cameras:  # painting only; None: from TF
            cam.camera_from_lidar = self.parameter_extrinsic(cam)
        if p["sweeps"] > 1 and p["painting"]:  # the scores paint the newest sweep's points, not the merged cloud
            raise ConfigError(f"{self.get_name()}: parameter 'sweeps' ({p['sweeps']}) > 1 does not combine with "
                              "painting: set sweeps to 1 or painting to false")
        self.sweeps = SweepAccumulator(p["sweeps"], p["sweeps_max_age"]) if p["sweeps"] > 1 else None
        if any(cam.camera_from_lidar is None for cam in self.paint_cameras) or p["output_frame"] \
                or self.sweeps is not None:
            self.enable_tf()
        self.empty_clouds = 0
        self.nan_clouds = 0
        self.truncated_frames = 0
        self.painted_frames = 0  # painting on: frames with segmentation scores ...
        self.unpainted_frames = 0  # ... and without (unpainted-equivalent)
        self._finding_times: dict[str, float] = {}
        self.detections_pub = self.output_publisher(Detection3DArray, "detections")
        self.markers_pub = self.output_publisher(MarkerArray, "detections/markers")
        self.sync: ApproximateTimeSynchronizer | None = None
        if p["painting"]:
            label_inputs = [cam.labels_input for cam in self.paint_cameras]
            self.sync = ApproximateTimeSynchronizer(
                inputs=["points", *label_inputs], queue_size=p["sync_queue_size"],
                max_interval=p["sync_max_interval"], optional=dict.fromkeys(label_inputs, p["painting_timeout"]))
            self.sensor_subscription(PointCloud2, "points", lambda m: self.on_input("points", m), name="points")
            for cam in self.paint_cameras:
                self.sensor_subscription(Image, cam.topic("segmentation/labels"),
                                         lambda m, name=cam.labels_input: self.on_input(name, m),
                                         name=cam.labels_input, required=False, stall_timeout=p["painting_timeout"])
                self.sensor_subscription(CameraInfo, cam.topic("camera_info"),
                                         lambda m, cam=cam: self.on_camera_info(cam, m), name=cam.info_input,
                                         required=False, stall_timeout=5.0)
        else:
            self.sensor_subscription(PointCloud2, "points", lambda m: self.detect(m, None), name="points")
        self.add_on_set_parameters_callback(self._check_tuning)
        self.add_post_set_parameters_callback(self._apply_tuning)
        cameras = (f" from {len(self.paint_cameras)} cameras ({', '.join(c.namespace for c in self.paint_cameras)})"
                   if len(self.paint_cameras) > 1 else "")
        painted = f", painted with {list(spec.paint_classes)}{cameras}" if p["painting"] else ""
        runtime = self.detector.backbone_head.info.detail  # the encoder's too, except a dynamic one's (numpy)
        self.get_logger().info(f"{config.name}{painted} over {list(config.point_cloud_range)} on {runtime}")
        self.report_model("3D detection", spec.origin, runtime, p["device"])

    def parameter_extrinsic(self, cam: PaintCamera) -> Transform | None:
        """camera optical <- LiDAR of ``cam`` from the parameters, or None where TF gives it. With several cameras
        only a calibration file can give them (each camera named by its namespace), not one camera_from_lidar."""
        p = self.params
        if len(self.paint_cameras) == 1:
            return camera_from_lidar(p)
        if not extrinsics_from_parameters(p):
            return None
        if not p["calibration_file"]:
            raise ConfigError("camera_from_lidar is one camera's extrinsic; with several paint_cameras the "
                              "extrinsics come from TF or from calibration_file")
        return camera_from_lidar({**p, "camera": cam.namespace})

    def intensity_scale(self) -> float:
        """The parameter's value, or the model package's (a nuScenes detector's: 1, raw intensities) while the
        parameter keeps its default."""
        return self.param_or_package("intensity_scale", self.spec.intensity_scale)

    def score_thresholds(self) -> list[float]:
        """The parameter's values, or the model package's while the parameter keeps its default."""
        return self.param_or_package("score_thresholds", self.spec.package_value("score_thresholds", list))

    def _check_tuning(self, changes) -> SetParametersResult:
        """Reject score thresholds whose count fits neither one value nor one per class (the base checks the rest)."""
        for change in changes:
            if change.name == "score_thresholds" and len(change.value) not in (1, len(self.class_ids)):
                return SetParametersResult(successful=False, reason=f"score_thresholds needs 1 or "
                                           f"{len(self.class_ids)} values ({', '.join(self.class_ids)})")
        return SetParametersResult(successful=True)

    def on_parameters_changed(self, names: frozenset[str]) -> None:
        if "camera_from_lidar" in names and len(self.paint_cameras) > 1:
            raise ConfigError("camera_from_lidar is one camera's extrinsic; with several paint_cameras the "
                              "extrinsics come from TF or from calibration_file")
        if changed_camera_from_lidar(self.params, names, in_use=self.params["painting"]):
            self.paint_cameras[0].camera_from_lidar = camera_from_lidar(self.params)

    def _apply_tuning(self, changes) -> None:
        """Run-time changes of ``score_thresholds`` and ``intensity_scale``, once every check passed."""
        names = {change.name for change in changes}
        if "score_thresholds" in names:
            self.detector.set_score_thresholds(self.score_thresholds())
        if "intensity_scale" in names:
            self.detector.intensity_scale = self.intensity_scale()

    # -- inputs -----------------------------------------------------------------------------------------------------
    def on_time_jump(self) -> None:
        if self.sync is not None:
            self.sync.reset()
        if self.sweeps is not None:
            self.sweeps.clear()

    def on_camera_info(self, cam: PaintCamera, msg: CameraInfo) -> None:
        """Keep ``cam``'s latest calibration (static per camera)."""
        cam.camera = camera_info_to_intrinsics(msg, limits=self.limits).pinhole()
        cam.frame_id = msg.header.frame_id

    def on_input(self, name: str, msg) -> None:
        assert self.sync is not None  # painting on
        for synced in self.sync.add(name, stamp_to_ns(msg.header.stamp), msg):
            labels_msgs = [synced.messages.get(cam.labels_input) for cam in self.paint_cameras]
            self.run_guarded("points", self.detect, synced.messages["points"], labels_msgs)
        for event in self.sync.pop_events():
            self.get_logger().warn(str(event))
        if self.sync.stalled():
            self.set_finding("painting", Level.WARN, "segmentation labels missing: detecting unpainted-equivalent")
        else:
            self.clear_finding("painting")

    def segmentation_scores(self, labels_msgs: list[Image | None] | None,
                            cloud: PointCloud2) -> PaintingScores | None | bool:
        """The painting input of the cameras' labels images (one per ``paint_cameras`` entry, None where missing):
        one camera's ``SegmentationScores``, several cameras' ``MultiCameraScores``, or None (and a WARN) when none
        can be used; False when a camera <- LiDAR transform is missing from TF (the cloud is skipped, reported by
        ``lookup_transform``)."""
        scores = []
        for cam, msg in zip(self.paint_cameras, labels_msgs or (), strict=False):
            if msg is None:
                continue
            if cam.camera is None:
                where = f" on {cam.info_input}" if cam.namespace else ""
                self._flag("painting_camera", f"no CameraInfo received yet{where}: detecting unpainted-equivalent")
                continue
            if msg.encoding not in LABEL_ENCODINGS:
                raise MessageFormatError(f"segmentation labels have encoding {msg.encoding!r}; expected one of "
                                         f"{LABEL_ENCODINGS}")
            extrinsic = cam.camera_from_lidar if cam.camera_from_lidar is not None else self.tf_camera_from_lidar(
                msg.header.frame_id or cam.frame_id, stamp_to_ns(msg.header.stamp), cloud)
            if extrinsic is None:
                return False
            scores.append(SegmentationScores(cam.camera, extrinsic, labels=image_to_numpy(msg, limits=self.limits),
                                             class_ids=self.paint_ids))
        if not scores:
            return None
        return scores[0] if len(self.paint_cameras) == 1 else MultiCameraScores(tuple(scores))

    def tf_camera_from_lidar(self, camera_frame: str, labels_stamp_ns: int, cloud: PointCloud2) -> Transform | None:
        """camera <- LiDAR from TF: at the cloud's stamp, or with ``paint_fixed_frame`` the camera at the labels'
        stamp <- fixed frame <- the LiDAR at the cloud's stamp. None (reported) when TF cannot give it."""
        lidar_frame, cloud_stamp = cloud.header.frame_id, stamp_to_ns(cloud.header.stamp)
        fixed = self.params["paint_fixed_frame"].strip("/")
        if not fixed:
            return self.lookup_transform(camera_frame, lidar_frame, cloud_stamp, "camera <- LiDAR", "points")
        camera_fixed = self.lookup_transform(camera_frame, fixed, labels_stamp_ns, "camera <- fixed frame", "points")
        if camera_fixed is None:
            return None
        fixed_lidar = self.lookup_transform(fixed, lidar_frame, cloud_stamp, "fixed frame <- LiDAR", "points")
        return None if fixed_lidar is None else camera_fixed @ fixed_lidar

    # -- findings ---------------------------------------------------------------------------------------------------
    def _flag(self, key: str, text: str) -> None:
        self._finding_times[key] = time.monotonic()
        self.set_finding(key, Level.WARN, text)

    def _expire_findings(self) -> None:
        now = time.monotonic()
        for key, since in list(self._finding_times.items()):
            if now - since > FINDING_HOLD_S:
                del self._finding_times[key]
                self.clear_finding(key)

    def skip_cloud(self, kind: str, msg: PointCloud2) -> None:
        """Count and report a cloud without a usable point."""
        if kind == "empty":
            self.empty_clouds += 1
        else:
            self.nan_clouds += 1
        self.frames_skipped += 1
        self.inputs["points"].on_dropped(f"{kind} cloud")
        text = f"{self.empty_clouds} empty and {self.nan_clouds} all-NaN clouds skipped"
        self._flag("cloud", text)
        self.log_throttled(f"cloud:{kind}", "warn", f"skipping a {kind} cloud ({msg.width}x{msg.height} points, "
                                                    f"stamp {stamp_to_ns(msg.header.stamp)}); {text}")

    # -- detection --------------------------------------------------------------------------------------------------
    def merged_sweeps(self, cloud: np.ndarray, header: Header) -> np.ndarray | None:
        """The cloud merged with the earlier sweeps (``(N, 5)`` x, y, z, raw intensity, time lag s, in the cloud's
        frame), or None when TF cannot give the cloud's pose in ``sweeps_frame`` (skipped and reported)."""
        assert self.sweeps is not None
        stamp_ns = stamp_to_ns(header.stamp)
        pose = self.lookup_transform(self.params["sweeps_frame"].strip("/"), header.frame_id, stamp_ns,
                                     "sweeps_frame <- cloud", "points")
        if pose is None:
            return None
        return self.sweeps.push(stamp_ns * 1e-9, pose.matrix(), point_features(cloud))

    def detect(self, msg: PointCloud2, labels_msgs: list[Image | None] | None) -> None:
        """Detect in the cloud ``msg``, painted from ``labels_msgs`` (one per painting camera; None: unpainted)."""
        started = time.perf_counter()
        if not self.has_subscribers((self.detections_pub, self.markers_pub)):
            return
        cloud = pointcloud2_to_array(msg, limits=self.limits)
        if cloud.size == 0:
            self.skip_cloud("empty", msg)
            return
        scores = self.segmentation_scores(labels_msgs, msg)
        if scores is False:
            return
        header = msg.header
        points = cloud if self.sweeps is None else self.merged_sweeps(cloud, header)
        if points is None:
            return
        output_frame = self.params["output_frame"].strip("/")
        to_output = None  # T_output_cloud; None: publish in the cloud's frame
        if output_frame and output_frame != header.frame_id.strip("/"):
            to_output = self.lookup_transform(output_frame, header.frame_id, stamp_to_ns(header.stamp),
                                              "output_frame <- cloud", "points")
            if to_output is None:
                return
            header = Header(stamp=header.stamp, frame_id=output_frame)
        result = self.detector(points, scores)
        if result.num_points == 0:
            self.skip_cloud("all-NaN", msg)
            return
        if result.truncated:
            self.truncated_frames += 1
            self._flag("pillars", f"too many pillars: {result.num_occupied} occupied, {result.num_pillars} "
                                  "(max_pillars) encoded, the rest dropped")
        self._expire_findings()
        if result.painted is not None:
            self.painted_frames += result.painted
            self.unpainted_frames += not result.painted
        det = result.detections
        names = [self.class_ids[int(label) - 1] for label in det.labels]
        boxes = det.boxes.astype(np.float64)
        centers, yaws = boxes[:, :3], boxes[:, 6]
        if to_output is not None:
            centers, yaws = transform_boxes(to_output, centers, yaws)
        self.detections_pub.publish(detection3d_array(header, centers, boxes[:, 3:6], yaws, names, det.scores))
        self.markers_pub.publish(box_markers(header, centers, boxes[:, 3:6], yaws, names, det.scores,
                                             line_width=self.params["marker_line_width"], colors=self.colors))
        self.report_timing(stamp_to_ns(header.stamp), started)


def main(args: list[str] | None = None) -> int:
    return run_node(Detection3DNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
