"""sensor_msgs/PointCloud2 payloads <-> numpy structured arrays, without ROS.

A cloud is a numpy structured array whose fields are the message's PointFields (``x``, ``y``, ``z`` in metres in the
message's ``header.frame_id``, plus ``intensity``, ``ring``, ``t``, ``rgb``, ...): shape ``(N,)`` for an unorganized
cloud (``height == 1``) and ``(height, width)`` for an organized one (row-major, as the sensor's scan pattern).
The functions take plain field values, so the same code serves rclpy messages and rosbags' dataclasses.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import IntEnum
from itertools import pairwise
from typing import Any

import numpy as np

from ros_mmfusion.core.codec._buffers import (
    HOST_IS_BIGENDIAN,
    ByteOrder,
    as_count,
    byte_order,
    padded_rows,
)
from ros_mmfusion.core.codec.limits import DEFAULT_LIMITS, MessageLimits
from ros_mmfusion.core.errors import MessageFormatError


class PointFieldType(IntEnum):
    """sensor_msgs/PointField datatype constants."""

    INT8 = 1
    UINT8 = 2
    INT16 = 3
    UINT16 = 4
    INT32 = 5
    UINT32 = 6
    FLOAT32 = 7
    FLOAT64 = 8


_DATATYPE_DTYPES: dict[int, np.dtype] = {
    PointFieldType.INT8: np.dtype("i1"),
    PointFieldType.UINT8: np.dtype("u1"),
    PointFieldType.INT16: np.dtype("i2"),
    PointFieldType.UINT16: np.dtype("u2"),
    PointFieldType.INT32: np.dtype("i4"),
    PointFieldType.UINT32: np.dtype("u4"),
    PointFieldType.FLOAT32: np.dtype("f4"),
    PointFieldType.FLOAT64: np.dtype("f8"),
}
_DTYPE_DATATYPES: dict[tuple[str, int], int] = {
    (dt.kind, dt.itemsize): int(code) for code, dt in _DATATYPE_DTYPES.items()
}


@dataclass(frozen=True)
class CloudField:
    """One sensor_msgs/PointField: ``name``, byte ``offset`` in the point, ``datatype`` (PointFieldType), ``count``."""

    name: str
    offset: int
    datatype: int
    count: int = 1


@dataclass(frozen=True, eq=False)
class CloudFields:
    """The payload fields of a sensor_msgs/PointCloud2, named and typed like the message's own fields.

    ``data`` is a flat C-contiguous uint8 ``np.ndarray`` of ``row_step * height`` bytes, a view of the encoded cloud
    when no copy was needed. ``is_dense`` is True only when no point has a non-finite x, y or z.
    """

    height: int
    width: int
    fields: tuple[CloudField, ...]
    is_bigendian: bool
    point_step: int
    row_step: int
    data: np.ndarray
    is_dense: bool


def _field_values(field: Any, index: int) -> tuple[str, int, int, int]:
    """(name, offset, datatype, count) of a PointField-like object or a (name, offset, datatype[, count]) tuple."""
    if isinstance(field, (tuple, list)):
        if len(field) not in (3, 4):
            raise MessageFormatError(
                f"PointCloud2.fields[{index}]: expected (name, offset, datatype[, count]), got {field!r}"
            )
        name, offset, datatype = field[:3]
        count = field[3] if len(field) == 4 else 1
    else:
        try:
            name, offset, datatype, count = field.name, field.offset, field.datatype, field.count
        except AttributeError as exc:
            raise MessageFormatError(f"PointCloud2.fields[{index}] is not a PointField: {field!r}") from exc
    if not isinstance(name, str) or not name:
        raise MessageFormatError(f"PointCloud2.fields[{index}].name must be a non-empty string, got {name!r}")
    offset = as_count(offset, f"PointField {name!r} offset")
    count = as_count(count, f"PointField {name!r} count")
    if count == 0:
        raise MessageFormatError(f"PointField {name!r} has count 0: each field needs at least one element")
    if datatype not in _DATATYPE_DTYPES:
        known = ", ".join(f"{t.name}={t.value}" for t in PointFieldType)
        raise MessageFormatError(f"PointField {name!r} has unknown datatype {datatype!r} (expected one of {known})")
    return name, offset, int(datatype), count


def fields_to_dtype(
    fields: Iterable[Any], point_step: int, is_bigendian: Any = False, *, limits: MessageLimits = DEFAULT_LIMITS
) -> np.dtype:
    """The structured dtype of one point: explicit offsets, ``itemsize == point_step``, ``count > 1`` as subarrays.

    ``fields`` holds PointField-like objects (rclpy, rosbags, :class:`CloudField`) or (name, offset, datatype[, count])
    tuples. Raises MessageFormatError for an unknown datatype, a zero count, a duplicated name, overlapping fields,
    more fields than ``point_step`` has bytes, or a ``point_step`` smaller than the fields' extent or larger than
    ``limits.max_point_step``.
    """
    point_step = as_count(point_step, "PointCloud2.point_step")
    limits.check_point_step("PointCloud2", point_step)
    try:
        fields = list(fields)
    except TypeError as exc:
        raise MessageFormatError(f"PointCloud2.fields must be a sequence of PointFields: {exc}") from None
    if len(fields) > point_step:  # fields do not overlap and take a byte at least: also bounds the work below
        raise MessageFormatError(f"PointCloud2.fields has {len(fields)} fields, more than point_step {point_step} "
                                 "has bytes")
    order = byte_order(is_bigendian)
    names: list[str] = []
    formats: list[Any] = []
    offsets: list[int] = []
    spans: list[tuple[int, int, str]] = []
    for index, field in enumerate(fields):
        name, offset, datatype, count = _field_values(field, index)
        if name in names:
            raise MessageFormatError(f"PointCloud2.fields: field name {name!r} appears more than once")
        element = _DATATYPE_DTYPES[datatype].newbyteorder(order)
        names.append(name)
        formats.append(element if count == 1 else (element, (count,)))
        offsets.append(offset)
        spans.append((offset, offset + element.itemsize * count, name))
    spans.sort()
    for (start_a, end_a, name_a), (start_b, end_b, name_b) in pairwise(spans):
        if start_b < end_a:
            raise MessageFormatError(
                f"PointField {name_b!r} (bytes {start_b}..{end_b}) overlaps {name_a!r} (bytes {start_a}..{end_a})"
            )
    extent = spans[-1][1] if spans else 0
    if point_step < extent:
        raise MessageFormatError(
            f"PointCloud2.point_step {point_step} is smaller than the fields' extent: {spans[-1][2]!r} ends at "
            f"byte {extent}"
        )
    spec: Any = {"names": names, "formats": formats, "offsets": offsets, "itemsize": point_step}
    return np.dtype(spec)


def dtype_to_fields(dtype: np.dtype) -> tuple[tuple[CloudField, ...], bool | None]:
    """(PointFields, byte order) describing a structured point dtype; the order is None for mixed or 1-byte-only.

    Subarray fields become ``count`` elements (flattened). Raises MessageFormatError for a non-structured dtype,
    nested structures or element types PointField cannot express (bool, float16, int64, ...).
    """
    if dtype.names is None or dtype.fields is None:
        raise MessageFormatError(f"a point cloud needs a structured dtype with named fields, got {dtype}")
    fields: list[CloudField] = []
    orders: set[bool] = set()
    for name in dtype.names:
        field_dtype, offset = dtype.fields[name][:2]
        element, shape = (field_dtype.subdtype if field_dtype.subdtype else (field_dtype, ()))
        datatype = _DTYPE_DATATYPES.get((element.kind, element.itemsize))
        if datatype is None or element.names is not None:
            raise MessageFormatError(
                f"cloud field {name!r} has element type {element}, which PointField cannot express "
                "(int8/16/32, uint8/16/32, float32/64)"
            )
        if element.itemsize > 1:
            orders.add(element.byteorder == ">" or (element.byteorder in "=|" and HOST_IS_BIGENDIAN))
        fields.append(CloudField(name, int(offset), datatype, int(np.prod(shape, dtype=np.int64))))
    return tuple(fields), (orders.pop() if len(orders) == 1 else None)


def decode_cloud(
    height: int,
    width: int,
    fields: Iterable[Any],
    is_bigendian: Any,
    point_step: int,
    row_step: int,
    data: Any,
    *,
    limits: MessageLimits = DEFAULT_LIMITS,
) -> np.ndarray:
    """The points of a PointCloud2 as a structured array, a view of ``data`` whenever possible.

    Shape ``(width,)`` when ``height == 1`` (unorganized), ``(height, width)`` otherwise. Row padding (``row_step``
    larger than ``width * point_step``) and padding between fields are skipped by striding. Data whose
    ``is_bigendian`` differs from the host is converted into a new native-order array; otherwise the result shares
    memory with ``data`` (read-only when ``data`` is ``bytes``). Bytes beyond ``row_step * height`` are ignored.
    Raises MessageFormatError for bad fields (see :func:`fields_to_dtype`), a ``row_step`` smaller than a row,
    ``data`` shorter than ``row_step * height``, or sizes over ``limits`` (``width * height`` points, ``point_step``,
    ``row_step`` and ``row_step * height`` bytes), checked before anything is allocated.
    """
    height = as_count(height, "PointCloud2.height")
    width = as_count(width, "PointCloud2.width")
    row_step = as_count(row_step, "PointCloud2.row_step")
    limits.check_points("PointCloud2", width, height)
    limits.check_point_step("PointCloud2", as_count(point_step, "PointCloud2.point_step"))
    limits.check_data_bytes("PointCloud2.row_step", row_step)
    limits.check_data_bytes(f"PointCloud2.row_step x height = {row_step} x {height} =", row_step * height)
    wire = fields_to_dtype(fields, point_step, is_bigendian, limits=limits)
    rows = padded_rows(data, "PointCloud2", height, width, wire.itemsize, row_step, "row_step",
                       f"point_step {wire.itemsize}")
    shape = (width,) if height == 1 else (height, width)
    native = _with_byte_order(wire, "=")
    if height == 0 or width == 0 or wire.itemsize == 0:
        return np.zeros(shape, native)
    points = rows.view(wire).reshape(shape)
    if bool(is_bigendian) != HOST_IS_BIGENDIAN and native != wire:
        converted = np.zeros(shape, native)
        converted[...] = points
        return converted
    return points


def _with_byte_order(dtype: np.dtype, order: ByteOrder) -> np.dtype:
    """``dtype`` (structured) with every field's element type in byte ``order``; offsets and itemsize kept."""
    names = list(dtype.names or ())
    layout: Mapping[str, tuple[Any, ...]] = dtype.fields or {}
    formats: list[Any] = []
    for name in names:
        field_dtype = layout[name][0]
        if field_dtype.subdtype:
            formats.append((field_dtype.subdtype[0].newbyteorder(order), field_dtype.subdtype[1]))
        else:
            formats.append(field_dtype.newbyteorder(order))
    spec: Any = {
        "names": names, "formats": formats, "offsets": [layout[n][1] for n in names], "itemsize": dtype.itemsize
    }
    return np.dtype(spec)


def encode_cloud(cloud: np.ndarray, *, is_bigendian: bool | None = None) -> CloudFields:
    """PointCloud2 payload fields for a structured array; no copy when it is C-contiguous in the wire byte order.

    ``cloud`` of shape ``(N,)`` becomes an unorganized cloud (height 1), ``(H, W)`` an organized one. Offsets and
    padding of the dtype are kept (``point_step == dtype.itemsize``). ``is_bigendian`` picks the wire byte order
    (default: the dtype's own, native for native arrays). Raises MessageFormatError for a non-structured array,
    another number of dimensions, or field types PointField cannot express.
    """
    cloud = np.asarray(cloud)
    fields, source_big = dtype_to_fields(cloud.dtype)
    if cloud.ndim not in (1, 2):
        raise MessageFormatError(f"a point cloud array must be (N,) or (H, W), got shape {cloud.shape}")
    wire_big = (HOST_IS_BIGENDIAN if source_big is None else source_big) if is_bigendian is None else bool(is_bigendian)
    if source_big != wire_big:
        wire = _with_byte_order(cloud.dtype, byte_order(wire_big))
        if wire != cloud.dtype:
            converted = np.zeros(cloud.shape, wire)
            converted[...] = cloud
            cloud = converted
    height, width = (1, cloud.shape[0]) if cloud.ndim == 1 else cloud.shape
    point_step = cloud.dtype.itemsize
    if cloud.size == 0 or point_step == 0:
        data = np.zeros(0, np.uint8)
    else:
        data = np.ascontiguousarray(cloud).reshape(-1).view(np.uint8)
    return CloudFields(
        height=height,
        width=width,
        fields=fields,
        is_bigendian=wire_big,
        point_step=point_step,
        row_step=width * point_step,
        data=data,
        is_dense=_is_dense(cloud),
    )


def _is_dense(cloud: np.ndarray) -> bool:
    """True when every point's x, y and z (those present) are finite."""
    for name in ("x", "y", "z"):
        if name in (cloud.dtype.names or ()) and cloud.dtype[name].kind == "f" and not np.isfinite(cloud[name]).all():
            return False
    return True


def _require_field(cloud: np.ndarray, name: str) -> np.ndarray:
    names = cloud.dtype.names or ()
    if name not in names:
        raise MessageFormatError(f"the point cloud has no field {name!r} (fields: {', '.join(names) or 'none'})")
    return cloud[name]


def field_values(cloud: np.ndarray, name: str) -> np.ndarray:
    """Field ``name`` of every point, row-major flattened: ``(N,)``, or ``(N, count)`` for a multi-element field.

    A view when the cloud's points are evenly spaced (no row padding); MessageFormatError if the field is missing.
    """
    values = _require_field(cloud, name)
    extra = values.shape[cloud.ndim :]
    return values.reshape((-1, *extra))


def xyz_array(cloud: np.ndarray, remove_nans: bool = True) -> np.ndarray:
    """``(N, 3)`` float32 x, y, z in metres (the cloud's frame), row-major.

    Points with a non-finite coordinate are dropped when ``remove_nans``; missing fields raise MessageFormatError.
    """
    columns = []
    for name in "xyz":  # all checked before the output is allocated
        values = _require_field(cloud, name)
        if values.shape != cloud.shape:
            raise MessageFormatError(f"cloud field {name!r} has count {values.shape[cloud.ndim:]}, expected 1")
        columns.append(values)
    out = np.empty((*cloud.shape, 3), np.float32)
    for axis, values in enumerate(columns):
        out[..., axis] = values
    out = out.reshape(-1, 3)
    if remove_nans:
        finite = np.isfinite(out).all(axis=1)
        if not finite.all():
            out = out[finite]
    return out


def structured_cloud(xyz: np.ndarray, **fields: np.ndarray) -> np.ndarray:
    """An aligned structured cloud: float32 ``x, y, z`` from ``xyz`` (``(N, 3)`` or ``(H, W, 3)``, metres), ``fields``.

    Each extra field is ``xyz.shape[:-1]`` (count 1) or ``xyz.shape[:-1] + (k,)`` (count k) and keeps its dtype,
    which must be one PointField can express.
    """
    xyz = np.asarray(xyz)
    if xyz.ndim not in (2, 3) or xyz.shape[-1] != 3:
        raise MessageFormatError(f"xyz must be (N, 3) or (H, W, 3), got {xyz.shape}")
    shape = xyz.shape[:-1]
    spec: list[tuple[Any, ...]] = [("x", "f4"), ("y", "f4"), ("z", "f4")]
    values = {}
    for name, value in fields.items():
        value = np.asarray(value)
        if value.shape[: len(shape)] != shape or value.ndim > len(shape) + 1:
            raise MessageFormatError(f"field {name!r} has shape {value.shape}, expected {shape} or {shape} + (k,)")
        spec.append((name, value.dtype.newbyteorder("="), value.shape[len(shape) :]))
        values[name] = value
    cloud = np.zeros(shape, np.dtype(spec, align=True))  # C-struct alignment, as PCL lays points out
    dtype_to_fields(cloud.dtype)  # validates the extra fields' element types
    for axis, name in enumerate("xyz"):
        cloud[name] = xyz[..., axis]
    for name, value in values.items():
        cloud[name] = value
    return cloud


def unpack_rgb(cloud: np.ndarray, name: str = "rgb") -> np.ndarray:
    """``(N, 3)`` uint8 r, g, b from a packed colour field (PCL convention: float32 or uint32 holding 0x00RRGGBB)."""
    packed = field_values(cloud, name)
    if packed.dtype.itemsize != 4 or packed.ndim != 1:
        raise MessageFormatError(f"cloud field {name!r} is {packed.dtype}, expected a packed 4-byte colour")
    bits = packed.astype(packed.dtype.newbyteorder("="), copy=False).view(np.uint32)
    return np.stack([(bits >> 16) & 0xFF, (bits >> 8) & 0xFF, bits & 0xFF], axis=-1).astype(np.uint8)


def pack_rgb(rgb: np.ndarray) -> np.ndarray:
    """float32 packed colours (PCL/RViz ``rgb`` field) from ``(..., 3)`` uint8 r, g, b."""
    rgb = np.asarray(rgb, dtype=np.uint32)
    if rgb.shape[-1:] != (3,):
        raise MessageFormatError(f"rgb must be (..., 3), got {rgb.shape}")
    return ((rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]).astype(np.uint32).view(np.float32)

