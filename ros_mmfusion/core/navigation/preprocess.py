"""Navigation-policy inputs: camera frames to the ``(1, 3N, H, W)`` float32 tensors ViNT consumes.

The conventions are those of the ViNT deployment (``deployment/src/utils.py::transform_images``), which the released
weights expect:

1. optionally a centre crop to 4:3 (``center_crop``; off by default in the deployment, so a 16:9 camera image is
   squeezed to the model's aspect ratio, not cropped). The crop follows torchvision's ``center_crop``: offsets
   ``round((size - crop) / 2)`` (Python rounding) and zero padding where the crop exceeds the image;
2. resize to ``image_size`` = (width, height) = (85, 64) with PIL's bicubic filter. Other bicubic implementations
   (OpenCV, torchvision on tensors) differ by up to ~0.1 in normalised units, so PIL is used here;
3. ``/ 255`` and ImageNet mean/std normalisation in R,G,B order, HWC -> CHW, in float32 arithmetic as torchvision's
   ``ToTensor`` and ``Normalize`` do (float64 arithmetic, as ``segmentation.normalize_image`` uses for CMX, lands up
   to 1 ulp away), which reproduces the deployment's tensors bit for bit;
4. frames concatenated along channels, oldest first, the current frame last (channels ``3N-3 : 3N``).

Frames are ``(H, W, 3)`` uint8 arrays in **R,G,B** order (ROS ``rgb8``); convert ``bgr8`` before calling.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ros_mmfusion.core.models.imagenet import IMAGENET_MEAN, IMAGENET_STD
from ros_mmfusion.core.models.vint import VINT_IMAGE_SIZE

VINT_CROP_ASPECT = 4.0 / 3.0


def center_crop_to_aspect(image: np.ndarray, aspect: float = VINT_CROP_ASPECT) -> np.ndarray:
    """Centre crop ``(H, W, C)`` to width/height = ``aspect`` as the deployment does (torchvision rounding).

    Wider images keep their height (crop width ``int(H * aspect)``), others keep their width (crop height
    ``int(W / aspect)``); a crop larger than the image is zero padded, as torchvision does.
    """
    h, w = image.shape[:2]
    crop_h, crop_w = (h, int(h * aspect)) if w > h else (int(w / aspect), w)
    pad_h, pad_w = max(crop_h - h, 0), max(crop_w - w, 0)
    if pad_h or pad_w:
        image = np.pad(image, ((pad_h // 2, (pad_h + 1) // 2), (pad_w // 2, (pad_w + 1) // 2), (0, 0)))
        h, w = image.shape[:2]
    top = int(round((h - crop_h) / 2.0))
    left = int(round((w - crop_w) / 2.0))
    return image[top:top + crop_h, left:left + crop_w]


def preprocess_frame(image: np.ndarray, image_size: tuple[int, int] = VINT_IMAGE_SIZE,
                     center_crop: bool = False) -> np.ndarray:
    """One ``(H, W, 3)`` uint8 R,G,B frame -> ``(3, height, width)`` float32 normalised model input."""
    from PIL import Image

    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB frame, got {image.shape} {image.dtype}")
    if center_crop:
        image = center_crop_to_aspect(image)
    resized = Image.fromarray(np.ascontiguousarray(image), mode="RGB").resize(tuple(image_size), Image.BICUBIC)
    scaled = np.asarray(resized).astype(np.float32) / np.float32(255.0)
    normalised = (scaled - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(IMAGENET_STD, np.float32)
    return np.ascontiguousarray(normalised.transpose(2, 0, 1))


def preprocess_context(frames: Sequence[np.ndarray], image_size: tuple[int, int] = VINT_IMAGE_SIZE,
                       center_crop: bool = False) -> np.ndarray:
    """Frames oldest first -> ``(1, 3 * len(frames), height, width)`` float32, the layout of ViNT's ``obs_img``.

    A single frame gives the ``(1, 3, height, width)`` goal-image input.
    """
    if not frames:
        raise ValueError("no frames to preprocess")
    return np.concatenate([preprocess_frame(f, image_size, center_crop) for f in frames], axis=0)[None]


__all__ = ["VINT_IMAGE_SIZE", "center_crop_to_aspect", "preprocess_context", "preprocess_frame"]
