"""``fusion_segmentation_node``: RGB + X (depth, thermal, HHA from depth, or LiDAR points) -> semantic segmentation.

Inputs (relative names, remap them): ``rgb/image`` (sensor_msgs/Image rgb8/bgr8/...), ``rgb/camera_info`` (needed
for HHA and LiDAR X), and ``x/image`` (Image) or, for LiDAR, ``x/points`` (PointCloud2). ``rgb_transport`` and
``x_transport`` ``compressed`` take the images as sensor_msgs/CompressedImage on ``<topic>/compressed`` instead
(colour JPEG/PNG; thermal 16-bit PNG; depth 16-bit PNG or compressedDepth, JPEG refused). RGB and X are paired by an
approximate-time synchronizer. Outputs, all stamped with the RGB image's header: ``segmentation/labels`` (mono8 class
ids), ``segmentation/color`` (rgb8), ``segmentation/overlay`` (rgb8), ``segmentation/confidence`` (32FC1, when
``publish_confidence``) and ``segmentation/label_info`` (vision_msgs/LabelInfo, latched). Each image output is computed
only while something subscribes to it; with no subscriber at all a frame is not segmented.

The network runs off the executor thread (``MmfusionNode.latest_frame_worker``): input callbacks only pair the
messages and hand the latest pair over. A pair that arrives while another still waits for the network replaces it
(``max_waiting_frames`` 1, the default; more let a burst queue); the replaced one is counted in ``/diagnostics`` as
``frames_dropped_by_policy``.

Missing modality (``missing_x_policy``): ``neutral`` (default) keeps segmenting with the X encoder's neutral image
once X has been silent for ``x_timeout`` seconds and reports WARN; ``skip`` publishes nothing without X and reports
the stalled input as ERROR. The default model was trained with X dropped on 20% of samples; its measured cost of
running without X is in the model package's metrics.json and docs/segmentation.md.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np
from sensor_msgs.msg import Image, PointCloud2
from vision_msgs.msg import LabelInfo

from ros_mmfusion.core.errors import ConfigError
from ros_mmfusion.core.evaluation.topics import EvaluationTopics
from ros_mmfusion.core.extrinsics import EXTRINSIC_PARAMS, camera_from_lidar, changed_camera_from_lidar
from ros_mmfusion.core.geometry import Transform
from ros_mmfusion.core.health import Level
from ros_mmfusion.core.inference.int8 import choose_backend
from ros_mmfusion.core.inference.params import EnginesBuilt, build_only_line, check_precision, inference_params
from ros_mmfusion.core.modalities.encoders import make_encoder
from ros_mmfusion.core.params import ParamSpec
from ros_mmfusion.core.segmentation.artifacts import DEFAULT_PACKAGE, build_backend, load_package
from ros_mmfusion.core.segmentation.pipeline import FusionSegmenter, class_colours
from ros_mmfusion.core.segmentation.preprocess import X_NEEDS_CAMERA, encode_x
from ros_mmfusion.core.sync import ApproximateTimeSynchronizer
from ros_mmfusion.core.tf_buffer import TF_PARAMS
from ros_mmfusion.paths import share_dir
from ros_mmfusion.ros.builders import label_info
from ros_mmfusion.ros.entry import check_path_parameters, run_node
from ros_mmfusion.ros.image import numpy_to_image, plane_from_msg, rgb_from_msg, transport_param
from ros_mmfusion.ros.node_base import MmfusionNode, stamp_to_ns
from ros_mmfusion.ros.pointcloud import pointcloud2_to_array
from ros_mmfusion.ros.qos import LATCHED_QOS

DEPTH_MODALITIES = ("depth", "depth_hha")
"""X modalities read from a metric depth image: a compressed X must be lossless PNG (16-bit or compressedDepth)."""


class FusionSegmentationNode(MmfusionNode):
    EVALUATION = EvaluationTopics("rgb/image", ("rgb/image",), ("segmentation/labels", "segmentation/color"),
                                  labels="segmentation/labels", inputs=("rgb/image", "rgb/camera_info", "x/image"))
    PARAMS = (
        ParamSpec("model_package", DEFAULT_PACKAGE, "Model package directory (model.yaml + weights), absolute or "
                  "relative to the package share directory.", read_only=True),
        *inference_params("tensorrt: one engine for the model package's input size."),
        ParamSpec("missing_x_policy", "neutral", "When X stops arriving: 'neutral' segments with a neutral X and "
                  "reports WARN; 'skip' publishes nothing.", choices=("neutral", "skip"), read_only=True),
        ParamSpec("x_timeout", 0.5, "Seconds (of stamp time) without X before it counts as missing.", minimum=0.01,
                  read_only=True, stamp_time=True),
        ParamSpec("max_waiting_frames", 1, "Frames that may wait for the network: 1 (live) keeps the latest, a new "
                  "frame replacing the waiting one; more (offline replay that must score every frame of a burst) "
                  "queue up to that many, the oldest dropped beyond; drops count as frames_dropped_by_policy.",
                  minimum=1, maximum=100, read_only=True),
        ParamSpec("sync_queue_size", 10, "Approximate-time synchronizer queue size per input.", minimum=1,
                  maximum=100, read_only=True),
        ParamSpec("sync_max_interval", 0.05, "Largest stamp difference (s) between a paired RGB and X.",
                  minimum=0.0, maximum=1.0, read_only=True, stamp_time=True),
        ParamSpec("publish_confidence", False, "Publish segmentation/confidence (32FC1 softmax probability)."),
        ParamSpec("overlay_alpha", 0.5, "Weight of the class colours in segmentation/overlay.", minimum=0.0,
                  maximum=1.0),
        transport_param("rgb_transport", "the colour image rgb/image"),
        transport_param("x_transport", "the X image x/image (not used with LiDAR X)"),
        *EXTRINSIC_PARAMS,  # LiDAR X only
        *TF_PARAMS,
    )

    def __init__(self, **kwargs) -> None:
        super().__init__("fusion_segmentation", **kwargs)

    def configure(self) -> None:
        check_path_parameters(self, files=["calibration_file"], directories=["model_package"], base=share_dir())
        self.spec = load_package(self.params["model_package"])
        self.encoder = make_encoder(self.spec.x_modality, self.spec.x_params)
        check_precision(self.params["backend"], self.params["device"], self.params["precision"], self.get_name())
        choice = choose_backend(self.params["backend"], "segmentation", self.params["precision"])
        if choice.plan is not None:  # INT8 asked for: say what this CPU runs
            self.log_throttled("int8_choice", "warn" if choice.declined else "info", choice.log_line())
        self.segmenter = FusionSegmenter(self.spec, build_backend(
            self.spec, choice.backend, device=self.params["device"], precision=choice.precision,
            threads=self.params["threads"], cache_dir=self.params["engine_cache_dir"] or None))
        if self.params["build_only"]:
            raise EnginesBuilt(build_only_line("segmentation", self.segmenter.backend.info.detail))
        self.palette = self.spec.palette()
        self.camera_from_lidar = camera_from_lidar(self.params)  # None: from TF
        if self.camera_from_lidar is None and self.spec.x_modality == "lidar":
            self.enable_tf()
        optional = {"x": self.params["x_timeout"]} if self.params["missing_x_policy"] == "neutral" else None
        self.sync = ApproximateTimeSynchronizer(inputs=["rgb", "x"], queue_size=self.params["sync_queue_size"],
                                                max_interval=self.params["sync_max_interval"], optional=optional)
        self.labels_pub = self.output_publisher(Image, "segmentation/labels")
        self.color_pub = self.output_publisher(Image, "segmentation/color")
        self.overlay_pub = self.output_publisher(Image, "segmentation/overlay")
        self.confidence_pub = self.output_publisher(Image, "segmentation/confidence")
        # latched class map: published from configure on, not a lifecycle publisher
        self.label_info_pub = self.create_publisher(LabelInfo, "segmentation/label_info", LATCHED_QOS)
        self.label_info_pub.publish(label_info(dict(enumerate(self.spec.class_names)), 0.0))
        self._last_pair: tuple[np.ndarray, np.ndarray] | None = None  # the network's last input (network_probe)
        self.worker = self.latest_frame_worker("rgb", self.segment,  # failures count against the RGB input
                                               max_waiting=self.params["max_waiting_frames"])
        self.image_subscription("rgb/image", self.params["rgb_transport"], lambda m: self.on_input("rgb", m),
                                name="rgb")
        x_options = {"name": "x", "required": optional is None,
                     "stall_timeout": self.params["x_timeout"] if optional else None}
        if self.spec.x_modality == "lidar":
            if self.params["x_transport"] != "raw":
                raise ConfigError(f"{self.get_name()}: parameter 'x_transport': {self.params['x_transport']!r} needs "
                                  "an image X; this model's X is LiDAR points (x/points)")
            self.sensor_subscription(PointCloud2, "x/points", lambda m: self.on_input("x", m), **x_options)
        else:
            self.image_subscription("x/image", self.params["x_transport"], lambda m: self.on_input("x", m),
                                    **x_options)
        if self.spec.x_modality in X_NEEDS_CAMERA:
            self.camera_info_subscription("rgb/camera_info")
        self.get_logger().info(f"{self.spec.variant} ({self.spec.x_modality} X, {self.spec.num_classes} classes) "
                               f"on {self.segmenter.backend.info.detail}")
        self.report_model("segmentation", self.spec.origin, self.segmenter.backend.info.detail, self.params["device"])

    def on_parameters_changed(self, names: frozenset[str]) -> None:
        if changed_camera_from_lidar(self.params, names, in_use=self.spec.x_modality == "lidar"):
            self.camera_from_lidar = camera_from_lidar(self.params)

    def on_time_jump(self) -> None:
        self.sync.reset()

    def wanted_outputs(self) -> tuple[bool, bool, bool, bool]:
        """Whether labels, colour, overlay and confidence have a subscriber (confidence: and ``publish_confidence``)."""
        return (self.labels_pub.get_subscription_count() > 0, self.color_pub.get_subscription_count() > 0,
                self.overlay_pub.get_subscription_count() > 0,
                self.params["publish_confidence"] and self.confidence_pub.get_subscription_count() > 0)

    def network_probe(self):
        """The backend's run alone on the last RGB + X pair's network inputs (pre-processed once, here)."""
        pair = self._last_pair
        if pair is None:
            return None
        inputs = self.segmenter.preprocess(*pair)
        return lambda: self.segmenter.backend.run(inputs)

    def on_input(self, name: str, msg) -> None:
        for synced in self.sync.add(name, stamp_to_ns(msg.header.stamp), msg):
            if not any(self.wanted_outputs()):  # nobody listens: no inference, nothing waits
                continue
            usable, extrinsic = self.x_extrinsic(synced.messages["x"], synced.messages["rgb"].header.frame_id)
            if usable:  # decoded here: a malformed pair is counted against its input, never replaced unseen
                self.run_guarded("rgb", self.decode_and_submit, synced, extrinsic)
        for event in self.sync.pop_events():
            self.get_logger().warn(str(event))
        if self.sync.stalled():
            self.set_finding("x", Level.WARN, "X missing: segmenting with a neutral X (RGB-only accuracy)")
        else:
            self.clear_finding("x")

    def x_extrinsic(self, msg, rgb_frame: str = "") -> tuple[bool, Transform | None]:
        """(usable, camera <- LiDAR extrinsic) for the X message ``msg`` (None: X missing) of an RGB image in frame
        ``rgb_frame``, looked up on the executor thread (the TF buffer is fed there and is not thread-safe). LiDAR X
        takes it from TF (``rgb_frame`` <- the cloud's frame at the cloud's stamp) unless the parameters give it
        (``extrinsics_source``, core/extrinsics.py); not usable when TF has no such transform or only a stale one (a
        WARN, and the frame is skipped). Other X modalities need none."""
        extrinsic = self.camera_from_lidar
        if msg is not None and self.spec.x_modality == "lidar" and extrinsic is None:
            extrinsic = self.lookup_transform(rgb_frame or self.camera_frame_id, msg.header.frame_id,
                                              stamp_to_ns(msg.header.stamp), "camera <- LiDAR", "x")
            return extrinsic is not None, extrinsic
        return True, extrinsic

    def encode_x(self, msg, size: tuple[int, int], extrinsic: Transform | None) -> np.ndarray:
        """The X image for an RGB image of ``size`` (H, W) from an X message (None: X missing, the encoder's neutral
        image); ``extrinsic``: camera <- LiDAR for LiDAR X (:meth:`x_extrinsic`)."""
        raw, encoding = None, ""
        if msg is not None and self.spec.x_modality == "lidar":
            raw = pointcloud2_to_array(msg, limits=self.limits)
        elif msg is not None:  # depth keeps its metric values only through a lossless codec
            raw, encoding = plane_from_msg(msg, lossless=self.spec.x_modality in DEPTH_MODALITIES, limits=self.limits)
        camera = self.camera if self.spec.x_modality in X_NEEDS_CAMERA else None  # subscribed to only then
        return encode_x(self.encoder, self.spec.x_modality, raw, size, camera=camera, encoding=encoding,
                        camera_from_lidar=extrinsic)

    def decode_and_submit(self, synced: Any, extrinsic: Transform | None) -> None:
        """Decode the RGB image and encode X on the executor thread (cheap next to the network; a bad message
        raises MessageFormatError here, counted as malformed), then hand the pair to the worker."""
        started = time.perf_counter()
        rgb_msg = synced.messages["rgb"]
        rgb = rgb_from_msg(rgb_msg, limits=self.limits)
        x = self.encode_x(synced.messages["x"], rgb.shape[:2], extrinsic)
        self.worker.submit((rgb_msg.header, rgb, x, started))

    def segment(self, frame: tuple[Any, np.ndarray, np.ndarray, float]) -> None:
        """Segment one decoded RGB + X pair (on the worker thread) and publish the outputs that have a subscriber,
        stamped with the RGB image's header."""
        header, rgb, x, started = frame
        labels_out, colour_out, overlay_out, confidence_out = self.wanted_outputs()
        if not (labels_out or colour_out or overlay_out or confidence_out):
            return
        result = self.segmenter(rgb, x, confidence=confidence_out)
        self._last_pair = (rgb, x)
        if labels_out:
            self.labels_pub.publish(numpy_to_image(result.labels, "mono8", header))
        if colour_out or overlay_out:
            colour = class_colours(result.labels, self.palette)
            if colour_out:
                self.color_pub.publish(numpy_to_image(colour, "rgb8", header))
            if overlay_out:
                a = self.params["overlay_alpha"]
                overlay = (rgb.astype(np.float32) * (1 - a) + colour.astype(np.float32) * a).astype(np.uint8)
                self.overlay_pub.publish(numpy_to_image(overlay, "rgb8", header))
        if confidence_out:
            self.confidence_pub.publish(numpy_to_image(result.confidence, "32FC1", header))
        self.report_timing(stamp_to_ns(header.stamp), started)


def main(args: list[str] | None = None) -> int:
    return run_node(FusionSegmentationNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
