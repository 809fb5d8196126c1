"""The size of a PNG, JPEG or WebP image read from its header, before anything is decoded (private).

A compressed image can claim any size: a few hundred KB of PNG can inflate to gigabytes. :func:`image_header` reads
what the decoder would allocate from the container's own header (PNG IHDR, JPEG SOF, WebP VP8/VP8L/VP8X) so the
caller can refuse it first. Layouts follow the PNG specification (ISO/IEC 15948, section 11.2.2), JPEG (ITU-T T.81,
B.1.1.3 and B.2.2) and the WebP container / bitstream specifications (RFC 9649).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ros_mmfusion.core.errors import MessageFormatError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
_RIFF, _WEBP = b"RIFF", b"WEBP"

# JPEG start-of-frame markers (T.81 table B.1): every SOFn except DHT (C4), JPG (C8) and DAC (CC).
_JPEG_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
# Markers without a length field: TEM, RST0-7 (and SOI).
_JPEG_STANDALONE = frozenset({0x01, 0xD8, *range(0xD0, 0xD8)})
# Real files carry a handful of segments (APPn, DQT, DHT, COM) before the frame header; the bound keeps a file of
# nothing but fill bytes or empty segments from costing more than a millisecond.
_JPEG_MAX_MARKERS = 1000


@dataclass(frozen=True)
class ImageHeader:
    """What a compressed image's header declares: ``codec``, ``width`` x ``height`` pixels, bytes per sample."""

    codec: str
    width: int
    height: int
    sample_bytes: int = 1


def sniff_codec(raw: np.ndarray) -> str | None:
    """``"png"``, ``"jpeg"`` or ``"webp"`` from the magic bytes of ``raw`` (flat uint8), or None."""
    head = bytes(raw[:12])
    if head.startswith(PNG_MAGIC):
        return "png"
    if head.startswith(JPEG_MAGIC):
        return "jpeg"
    if head.startswith(_RIFF) and head[8:12] == _WEBP:
        return "webp"
    return None


def image_header(raw: np.ndarray, what: str, declared: str) -> ImageHeader:
    """The declared size of the PNG, JPEG or WebP image in ``raw`` (flat uint8).

    ``what`` names the data and ``declared`` the codec its message claims, in errors: MessageFormatError
    "<what> (<n> bytes) does not decode as <declared>: <reason>" when ``raw`` is none of the three, or its header is
    truncated or declares an empty image. Reads at most a few kilobytes of metadata (JPEG: up to 1000 segments before
    the frame header).
    """
    codec = sniff_codec(raw)
    try:
        if codec == "png":
            return _png_header(raw)
        if codec == "jpeg":
            return _jpeg_header(raw)
        if codec == "webp":
            return _webp_header(raw)
        raise MessageFormatError(f"it starts with {bytes(raw[:8])!r}, not a PNG, JPEG or WebP signature")
    except MessageFormatError as exc:
        raise MessageFormatError(f"{what} ({raw.size} bytes) does not decode as {declared}: {exc}") from None


def _be(raw: np.ndarray, start: int, size: int) -> int:
    return int.from_bytes(bytes(raw[start : start + size]), "big")


def _le(raw: np.ndarray, start: int, size: int) -> int:
    return int.from_bytes(bytes(raw[start : start + size]), "little")


def _checked(header: ImageHeader) -> ImageHeader:
    if header.width < 1 or header.height < 1:
        raise MessageFormatError(f"the {header.codec} header declares an empty image "
                                 f"({header.width} x {header.height} pixels)")
    return header


def _png_header(raw: np.ndarray) -> ImageHeader:
    # signature (8) | length (4, = 13) | "IHDR" | width (4) | height (4) | bit depth (1) | colour type (1) | ...
    if raw.size < 33:
        raise MessageFormatError(f"{raw.size} bytes is too short for a PNG header (33 bytes)")
    if _be(raw, 8, 4) != 13 or bytes(raw[12:16]) != b"IHDR":
        raise MessageFormatError("the PNG does not start with a 13-byte IHDR chunk")
    bit_depth = int(raw[24])
    return _checked(ImageHeader("png", _be(raw, 16, 4), _be(raw, 20, 4), 2 if bit_depth > 8 else 1))


def _jpeg_header(raw: np.ndarray) -> ImageHeader:
    pos, size = 2, raw.size  # after SOI
    for _ in range(_JPEG_MAX_MARKERS):
        if pos + 4 > size:
            break
        if raw[pos] != 0xFF:
            raise MessageFormatError(f"JPEG marker expected at byte {pos}, found 0x{int(raw[pos]):02x}")
        marker = int(raw[pos + 1])
        if marker == 0xFF:  # a fill byte
            pos += 1
            continue
        if marker in _JPEG_STANDALONE:
            pos += 2
            continue
        if marker in (0xD9, 0xDA):
            raise MessageFormatError(f"the JPEG reaches {'EOI' if marker == 0xD9 else 'SOS'} at byte {pos} "
                                     "without a frame header")
        length = _be(raw, pos + 2, 2)
        if length < 2:
            raise MessageFormatError(f"JPEG segment 0xff{marker:02x} at byte {pos} has length {length}")
        if marker in _JPEG_SOF:
            # length (2) | precision (1) | lines (2) | samples per line (2) | components (1)
            if pos + 9 > size:
                break
            precision = int(raw[pos + 4])
            height, width = _be(raw, pos + 5, 2), _be(raw, pos + 7, 2)
            if height == 0:
                raise MessageFormatError("the JPEG frame header declares 0 lines (a height defined later "
                                         "by a DNL marker is not supported)")
            return _checked(ImageHeader("jpeg", width, height, 2 if precision > 8 else 1))
        pos += 2 + length
    else:
        raise MessageFormatError(f"no JPEG frame header in the first {_JPEG_MAX_MARKERS} markers")
    raise MessageFormatError(f"the JPEG ends ({size} bytes) before its frame header")


def _webp_header(raw: np.ndarray) -> ImageHeader:
    # "RIFF" | size (4) | "WEBP" | chunk FourCC (4) | chunk size (4) | payload at byte 20
    if raw.size < 30:
        raise MessageFormatError(f"{raw.size} bytes is too short for a WebP header (30 bytes)")
    chunk = bytes(raw[12:16])
    if chunk == b"VP8 ":  # lossy: frame tag (3) | start code 9d 01 2a | width (14 bits) | height (14 bits)
        if bytes(raw[23:26]) != b"\x9d\x01\x2a":
            raise MessageFormatError("the WebP VP8 chunk lacks the key-frame start code")
        width, height = _le(raw, 26, 2) & 0x3FFF, _le(raw, 28, 2) & 0x3FFF
    elif chunk == b"VP8L":  # lossless: signature 0x2f | width - 1 (14 bits) | height - 1 (14 bits) | ...
        if raw[20] != 0x2F:
            raise MessageFormatError("the WebP VP8L chunk lacks its 0x2f signature")
        bits = _le(raw, 21, 4)
        width, height = (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    elif chunk == b"VP8X":  # extended: flags (1) | reserved (3) | canvas width - 1 (24 bits) | height - 1 (24 bits)
        width, height = _le(raw, 24, 3) + 1, _le(raw, 27, 3) + 1
    else:
        raise MessageFormatError(f"unknown WebP chunk {chunk!r} (expected VP8, VP8L or VP8X)")
    return _checked(ImageHeader("webp", width, height))
