"""CompressedImage as a node input: colour (JPEG within tolerance, PNG exact), one-channel 16-bit PNG depth and thermal
(exact, with the encoding the format states), compressedDepth, and the formats an input refuses (MessageFormatError)."""
from __future__ import annotations

import struct

import cv2
import numpy as np
import pytest

from ros_mmfusion.core.codec import (
    MessageLimits,
    decode_compressed_plane,
    decode_compressed_rgb,
    encode_compressed,
)
from ros_mmfusion.core.errors import MessageFormatError
from ros_mmfusion.core.modalities.depth import depth_metres


def scene(height: int = 48, width: int = 64) -> np.ndarray:
    """A smooth colour image (JPEG's favourable case, like a camera frame) with a sharp square in it."""
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x * 255 // width, y * 255 // height, (x + y) * 127 // (width + height) + 64], axis=-1)
    rgb[10:20, 10:20] = (250, 30, 30)
    return rgb.astype(np.uint8)


def test_png_colour_is_exact_and_jpeg_colour_is_close():
    rgb = scene()
    fmt, data = encode_compressed(rgb, "png")
    np.testing.assert_array_equal(decode_compressed_rgb(fmt, data), rgb)
    fmt, data = encode_compressed(rgb, "jpeg", quality=90)
    assert fmt == "rgb8; jpeg compressed bgr8"
    decoded = decode_compressed_rgb(fmt, data)
    assert decoded.shape == rgb.shape and decoded.dtype == np.uint8 and decoded.flags.c_contiguous
    error = np.abs(decoded.astype(int) - rgb)
    assert error.mean() < 3.0 and np.median(error) <= 2, (error.mean(), np.median(error))
    assert decoded[15, 15, 0] > 200 and decoded[15, 15, 2] < 80, "R and B not swapped"


def test_png_colour_with_alpha_drops_it():
    rgba = np.dstack([scene(), np.full(scene().shape[:2], 7, np.uint8)])
    ok, png = cv2.imencode(".png", cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    assert ok
    np.testing.assert_array_equal(decode_compressed_rgb("png", png), scene())


def test_16bit_png_thermal_and_depth_are_exact_with_their_encodings():
    counts = (np.arange(48 * 64, dtype=np.uint32) * 997 % 65536).astype(np.uint16).reshape(48, 64)
    fmt, data = encode_compressed(counts, "png")
    assert fmt == "mono16; png compressed mono16"
    pixels, encoding = decode_compressed_plane(fmt, data)
    assert encoding == "mono16" and pixels.dtype == np.uint16
    np.testing.assert_array_equal(pixels, counts)
    fmt, data = encode_compressed(counts, "png", encoding="16UC1")  # a depth camera's compressed publisher
    assert fmt == "16UC1; png compressed mono16"
    pixels, encoding = decode_compressed_plane(fmt, data, lossless=True)
    assert encoding == "16UC1"
    np.testing.assert_array_equal(pixels, counts)
    np.testing.assert_array_equal(depth_metres(pixels, encoding), counts.astype(np.float32) / 1000.0)
    # A bare "png" states nothing: 16 bits is taken as 16UC1 (REP-118 millimetres), 8 bits as mono8.
    assert decode_compressed_plane("png", data)[1] == "16UC1"
    fmt, data = encode_compressed((counts >> 8).astype(np.uint8), "png")
    assert decode_compressed_plane("png", data)[1] == "mono8"


def compressed_depth(inverse: np.ndarray, quant_a: float = 0.0, quant_b: float = 0.0) -> bytes:
    """compressed_depth_image_transport's layout: int32 format (0, inverse depth) and float32 depthParam[2], then
    the 16-bit PNG."""
    ok, png = cv2.imencode(".png", inverse)
    assert ok
    return struct.pack("<iff", 0, quant_a, quant_b) + png.tobytes()


def test_compressed_depth_gives_16uc1_or_32fc1():
    mm = (np.arange(12, dtype=np.uint16) * 250).reshape(3, 4)
    pixels, encoding = decode_compressed_plane("16UC1; compressedDepth png", compressed_depth(mm), lossless=True)
    assert encoding == "16UC1"
    np.testing.assert_array_equal(pixels, mm)
    quant_a = 100.0 * 101.0
    quant_b = 1.0 - quant_a / 10.0
    metres = np.array([[0.5, 2.0]], np.float32)
    inverse = np.round(quant_a / metres + quant_b).astype(np.uint16)
    pixels, encoding = decode_compressed_plane("32FC1; compressedDepth png", compressed_depth(inverse, quant_a,
                                                                                              quant_b), lossless=True)
    assert encoding == "32FC1" and pixels.dtype == np.float32
    np.testing.assert_allclose(pixels, metres, rtol=1e-3)


def test_formats_that_do_not_fit_the_input_are_refused():
    grey = np.full((8, 8), 100, np.uint8)
    depth = np.full((8, 8), 1500, np.uint16)
    colour = scene(8, 8)
    cases = [
        # a colour input given a grey, a 16-bit, or a depth image
        (lambda: decode_compressed_rgb(*encode_compressed(grey, "jpeg")), r"decodes to 1 channel\(s\) of uint8"),
        (lambda: decode_compressed_rgb(*encode_compressed(depth, "png")), r"1 channel\(s\) of uint16"),
        (lambda: decode_compressed_rgb("16UC1; compressedDepth png", compressed_depth(depth)),
         r"is a compressedDepth depth image"),
        # a depth input given JPEG, whatever the format claims
        (lambda: decode_compressed_plane("16UC1; jpeg compressed mono8", encode_compressed(grey, "jpeg")[1],
                                         lossless=True), r"is jpeg, which is lossy; this input needs lossless PNG"),
        (lambda: decode_compressed_plane("png", encode_compressed(grey, "jpeg")[1], lossless=True),
         r"\(format 'png'\) is jpeg, which is lossy"),
        # a stated 16-bit encoding whose data is 8 bits, a colour image for a one-channel input, a colour encoding
        (lambda: decode_compressed_plane("16UC1; png compressed mono16", encode_compressed(grey, "png")[1]),
         r"states 16UC1 but the data decodes to 8-bit pixels"),
        (lambda: decode_compressed_plane(*encode_compressed(colour, "png")), r"encoding 'rgb8' is not a one-channel"),
        (lambda: decode_compressed_plane("png", encode_compressed(colour, "png")[1]), r"decodes to 3 channels"),
        # sizes over the limits, checked on the PNG header before decoding
        (lambda: decode_compressed_plane(*encode_compressed(depth, "png"), limits=MessageLimits(max_image_side=4)),
         r"CompressedImage.width 8 exceeds the limit of 4 pixels \(parameter max_image_side\)"),
        (lambda: decode_compressed_rgb(*encode_compressed(colour, "png"), limits=MessageLimits(max_compressed_bytes=8)),
         r"exceeds the limit of 8 bytes \(parameter max_compressed_bytes\)"),
        (lambda: encode_compressed(grey, "png", encoding="16UC1"), r"encoding '16UC1' does not fit a uint8"),
    ]
    for call, message in cases:
        with pytest.raises(MessageFormatError, match=message):
            call()
