"""RGB-X fusion semantic segmentation (CMX), ROS-free. Data flow of one frame:

    RGB image + raw X (depth / thermal image, LiDAR points)
      -> preprocess.encode_x         X as an 8-bit image aligned with the RGB pixels (core/modalities encoders)
      -> FusionSegmenter.preprocess  both resized to the network input and normalised (preprocess.rgbx_inputs)
      -> Backend.run                 the CMX network (torch / ONNX Runtime fp32 or INT8 / TensorRT)
      -> postprocess                 logits resized back: class ids + softmax confidence at the RGB image's size

Rooms: ``preprocess.py`` (sensor arrays -> network inputs), ``pipeline.py`` (the stages above, model spec),
``quantize.py`` (INT8 calibration frames, fed through the pipeline's own stages), ``artifacts.py`` (model package
-> ONNX -> INT8 / TensorRT -> the Backend the pipeline receives), ``training.py`` (``mmfusion train
segmentation``), ``metrics.py`` (confusion matrix, IoU, mergeable accumulator). Build a pipeline with

    spec = load_package(path)
    segmenter = FusionSegmenter(spec, build_backend(spec, backend, device, precision, threads))
"""
from ros_mmfusion.core.segmentation.artifacts import build_backend, load_package
from ros_mmfusion.core.segmentation.pipeline import FusionSegmenter, SegmentationModelSpec, SegmentationResult

__all__ = ["FusionSegmenter", "SegmentationModelSpec", "SegmentationResult", "build_backend", "load_package"]
