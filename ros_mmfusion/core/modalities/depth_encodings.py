"""Vendor depth file encodings decoded to metres (float32, 0 = no data), and the cameras they were recorded with.

Encodings (all 16-bit single-channel files):

- ``tum`` (TUM RGB-D benchmark PNG): ``v / 5000`` metres; 0 and 65535 = no data.
- ``nyu_raw`` (NYU Depth V2 raw dumps: PGM of raw Kinect v1 disparity): ``351.3 / (1092.5 - v)`` metres, clamped to
  10 m (the toolbox's ``depth_rel2depth_abs`` and ``maxDepth``); ``v`` >= 1092 (2047 = no return) -> no data. The
  PGM header implies big-endian words (Netpbm) but the samples are little-endian: the toolbox byte-swaps what
  ``imread`` returns (``swapbytes``), and so does :func:`decode_depth`.
- ``sun`` (SUN RGB-D PNG): millimetres with the 3 low bits rotated to the top, ``((v >> 3) | (v << 13)) & 0xFFFF``
  mm (SUN RGB-D toolbox ``read3dPoints``); 0 = no data.
- ``mm`` (Kinect v2, RealSense, ROS ``16UC1``): ``v / 1000`` metres; 0 and 65535 = no data.
- ``tenth_mm``: ``v / 10000`` metres; 0 and 65535 = no data. ESANet's Kinect v2 samples are stored so (its README
  feeds them to its NYU model, trained on millimetres, with ``--depth_scale 0.1``; read as millimetres the room would
  be 24 m deep).

Default intrinsics (:func:`default_camera`), used when the user gives none:

- ``tum``: TUM RGB-D *freiburg3* (factory calibration, depth registered to colour): fx 535.4, fy 539.2,
  cx 320.1, cy 247.6 (TUM RGB-D benchmark, "File Formats / Intrinsic Camera Calibration of the Kinect").
- ``nyu_raw``: the NYU Depth V2 toolbox's ``camera_params.m`` *depth* camera (the raw dumps are not registered to
  colour): fx 582.62448, fy 582.69103, cx 313.04476, cy 238.44390.
- ``sun``: the NYU Depth V2 toolbox's *colour* camera (fx 518.85790, fy 519.46961, cx 325.58245, cy 253.73617),
  nominal for SUN RGB-D's 640x480 Kinect v1 frames (registered to colour); each SUN frame ships its own
  ``intrinsics.txt``, which should be passed instead when known.
- ``mm``, ``tenth_mm``: a Kinect v2 depth (IR) camera's factory intrinsics at 512x424 as OpenKinect-for-Processing
  lists them for the hardware (fx = fy 365.456, cx 254.878, cy 205.395); devices differ by a few pixels.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ros_mmfusion.core.errors import ConfigError, MessageFormatError
from ros_mmfusion.core.geometry import PinholeCamera

DEPTH_ENCODINGS = ("tum", "nyu_raw", "sun", "mm", "tenth_mm")
TUM_DEPTH_FACTOR = 5000.0
"""TUM RGB-D: depth PNG values per metre."""
SATURATION_IS_NO_DATA = ("tum", "mm", "tenth_mm")
"""Linear encodings whose full-scale value 65535 is a sentinel, not a measurement (ESANet's Kinect v2 sample marks
a TV screen and floor reflections with it): decoded as no data."""
NYU_DISPARITY_PARAMS = (351.3, 1092.5)
"""NYU Depth V2 toolbox ``depthParam1``, ``depthParam2``: metres = p1 / (p2 - raw disparity)."""
NYU_MAX_DEPTH = 10.0
"""NYU Depth V2 toolbox ``maxDepth`` (metres): decoded depths beyond it are clamped to it."""

#: (fx, fy, cx, cy, width, height) per encoding; see the module docstring for the sources.
DEFAULT_INTRINSICS: dict[str, tuple[float, float, float, float, int, int]] = {
    "tum": (535.4, 539.2, 320.1, 247.6, 640, 480),
    "nyu_raw": (5.8262448167737955e02, 5.8269103270988637e02, 3.1304475870804731e02, 2.3844389626620386e02,
                640, 480),
    "sun": (5.1885790117450188e02, 5.1946961112127485e02, 3.2558244941119034e02, 2.5373616633400465e02, 640, 480),
    "mm": (365.456, 365.456, 254.878, 205.395, 512, 424),
    "tenth_mm": (365.456, 365.456, 254.878, 205.395, 512, 424),
}


def default_camera(encoding: str, width: int | None = None, height: int | None = None) -> PinholeCamera:
    """The published default intrinsics of ``encoding``'s camera, scaled to ``width`` x ``height`` when given."""
    if encoding not in DEFAULT_INTRINSICS:
        raise ConfigError(f"depth encoding {encoding!r}: expected one of {', '.join(DEPTH_ENCODINGS)}")
    fx, fy, cx, cy, w, h = DEFAULT_INTRINSICS[encoding]
    camera = PinholeCamera(k=np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]]), width=w, height=h)
    if width is not None and height is not None and (width, height) != (w, h):
        camera = camera.scaled(width, height)
    return camera


def decode_depth(raw: np.ndarray, encoding: str) -> np.ndarray:
    """``(H, W)`` float32 metres (0 = no data) from a vendor-encoded uint16 depth image (see the module table).

    ``raw`` holds the samples as the file format defines them (a PGM's big-endian words, as :func:`read_pgm16` or
    MATLAB's ``imread`` return them); ``nyu_raw`` swaps their bytes as the NYU toolbox does.
    MessageFormatError for a non-uint16 or non-2-D array; ConfigError for an unknown encoding.
    """
    if encoding not in DEPTH_ENCODINGS:
        raise ConfigError(f"depth encoding {encoding!r}: expected one of {', '.join(DEPTH_ENCODINGS)}")
    if not isinstance(raw, np.ndarray) or raw.ndim != 2 or raw.dtype != np.uint16:
        got = f"{raw.dtype} {raw.shape}" if isinstance(raw, np.ndarray) else type(raw).__name__
        raise MessageFormatError(f"{encoding} depth: expected a (H, W) uint16 image, got {got}")
    value = raw.astype(np.float64)
    if encoding == "tum":
        metres = value / TUM_DEPTH_FACTOR
    elif encoding == "mm":
        metres = value / 1000.0
    elif encoding == "tenth_mm":
        metres = value / 10000.0
    elif encoding == "sun":
        rotated = ((raw >> np.uint16(3)) | (raw << np.uint16(13))).astype(np.uint16)
        metres = rotated.astype(np.float64) / 1000.0
    else:  # nyu_raw
        p1, p2 = NYU_DISPARITY_PARAMS
        denominator = p2 - raw.byteswap().astype(np.float64)
        metres = np.divide(p1, denominator, out=np.zeros_like(value), where=denominator > 0)
        metres = np.minimum(metres, NYU_MAX_DEPTH)
    if encoding in SATURATION_IS_NO_DATA:
        metres[raw == np.iinfo(np.uint16).max] = 0.0
    return np.where(np.isfinite(metres) & (metres > 0), metres, 0.0).astype(np.float32)


def read_pgm16(path: str | Path) -> np.ndarray:
    """A binary 16-bit PGM (``P5``, maxval > 255) as ``(H, W)`` uint16 in native order: the format stores the
    samples big-endian (Netpbm), which not every reader honours, so the header is parsed here."""
    data = Path(path).read_bytes()
    fields: list[bytes] = []
    position = 0
    while len(fields) < 4:
        while position < len(data) and data[position : position + 1].isspace():
            position += 1
        if data[position : position + 1] == b"#":
            position = data.find(b"\n", position) + 1 or len(data)
            continue
        end = position
        while end < len(data) and not data[end : end + 1].isspace():
            end += 1
        if end == position:
            break
        fields.append(data[position:end])
        position = end
    if len(fields) < 4 or fields[0] != b"P5":
        raise MessageFormatError(f"{path}: not a binary PGM (P5) file")
    try:
        width, height, maxval = (int(f) for f in fields[1:])
    except ValueError:
        raise MessageFormatError(f"{path}: bad PGM header {b' '.join(fields).decode(errors='replace')!r}") from None
    if maxval < 256:
        raise MessageFormatError(f"{path}: an 8-bit PGM (maxval {maxval}), not 16-bit depth")
    pixels = data[position + 1 :]
    if len(pixels) < width * height * 2:
        raise MessageFormatError(f"{path}: truncated PGM ({len(pixels)} bytes for {width}x{height} 16-bit pixels)")
    return np.frombuffer(pixels[: width * height * 2], dtype=">u2").reshape(height, width).astype(np.uint16)


def read_depth_file(path: str | Path, encoding: str) -> np.ndarray:
    """Read and decode one depth file: ``(H, W)`` float32 metres, 0 = no data. MessageFormatError naming the
    file when it cannot be read as 16-bit depth."""
    path = Path(path)
    if encoding == "nyu_raw" and path.suffix.lower() in (".pgm", ".pnm"):
        raw = read_pgm16(path)
    else:
        raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if raw is None:
            raise MessageFormatError(f"{path}: not a readable image")
        if raw.dtype != np.uint16 or raw.ndim != 2:
            raise MessageFormatError(f"{path}: expected a one-channel 16-bit depth image, got {raw.dtype} "
                                     f"with shape {raw.shape}")
    return decode_depth(raw, encoding)


__all__ = ["DEFAULT_INTRINSICS", "DEPTH_ENCODINGS", "NYU_DISPARITY_PARAMS", "NYU_MAX_DEPTH", "TUM_DEPTH_FACTOR",
           "decode_depth", "default_camera", "read_depth_file", "read_pgm16"]
