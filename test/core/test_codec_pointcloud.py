"""The ROS-free PointCloud2 codec: any field layout, all datatypes, padding, byte order, NaNs, malformed input."""
from __future__ import annotations

import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ros_mmfusion.core.codec import (
    CloudField,
    PointFieldType,
    decode_cloud,
    dtype_to_fields,
    encode_cloud,
    field_values,
    fields_to_dtype,
    pack_rgb,
    structured_cloud,
    unpack_rgb,
    xyz_array,
)
from ros_mmfusion.core.errors import MessageFormatError

HOST_BIG = sys.byteorder == "big"
SIZES = {1: 1, 2: 1, 3: 2, 4: 2, 5: 4, 6: 4, 7: 4, 8: 8}
SETTINGS = settings(max_examples=120, deadline=None)


@st.composite
def layouts(draw):
    """(fields, point_step): 1-6 fields of any datatype and count, in any order, with gaps and trailing padding."""
    count = draw(st.integers(1, 6))
    names = draw(st.lists(st.sampled_from(["x", "y", "z", "intensity", "ring", "t", "rgb", "label", "normal"]),
                          min_size=count, max_size=count, unique=True))
    fields, offset = [], 0
    for name in names:
        offset += draw(st.integers(0, 3))
        datatype = draw(st.integers(1, 8))
        elements = draw(st.sampled_from([1, 1, 1, 2, 3]))
        fields.append(CloudField(name, offset, datatype, elements))
        offset += SIZES[datatype] * elements
    order = draw(st.permutations(fields))
    return list(order), offset + draw(st.integers(0, 5))


def random_points(dtype: np.dtype, shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Points of ``dtype`` (native) holding arbitrary bytes, padding included."""
    raw = np.random.default_rng(seed).integers(0, 256, int(np.prod(shape)) * dtype.itemsize, dtype=np.uint8)
    return raw.view(dtype).reshape(shape)


def wire_bytes(points: np.ndarray, fields, point_step: int, big: bool, row_step: int) -> bytes:
    """PointCloud2.data a correct publisher would send: each field in the wire order, rows padded with junk."""
    order = ">" if big else "<"
    wire_dtype = np.dtype({
        "names": [f.name for f in fields],
        "formats": [(np.dtype(points.dtype[f.name].base).newbyteorder(order), points.dtype[f.name].shape)
                    for f in fields],
        "offsets": [f.offset for f in fields],
        "itemsize": point_step,
    })
    wire = np.zeros(points.shape, wire_dtype)
    for name in points.dtype.names:
        wire[name] = points[name]
    rows = wire.reshape(points.shape[0] if points.ndim == 2 else 1, -1)
    rows = rows.view(np.uint8).reshape(rows.shape[0], -1)
    junk = np.full((rows.shape[0], row_step - rows.shape[1]), 0xCD, np.uint8)
    return np.hstack([rows, junk]).tobytes()


def assert_same_points(a: np.ndarray, b: np.ndarray) -> None:
    """Same shape, names and field bits (NaN payloads included); padding bytes are not compared."""
    assert a.shape == b.shape and a.dtype.names == b.dtype.names
    for name in a.dtype.names:
        fa, fb = a[name], b[name]
        assert fa.dtype.newbyteorder("=") == fb.dtype.newbyteorder("=")
        assert np.ascontiguousarray(fa).astype(fa.dtype.newbyteorder("=")).tobytes() == \
            np.ascontiguousarray(fb).astype(fb.dtype.newbyteorder("=")).tobytes(), name


@SETTINGS
@given(layout=layouts(), height=st.integers(1, 4), width=st.integers(0, 6), row_padding=st.integers(0, 9),
       big=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_decode_reads_what_a_publisher_wrote(layout, height, width, row_padding, big, seed):
    fields, point_step = layout
    shape = (width,) if height == 1 else (height, width)
    points = random_points(fields_to_dtype(fields, point_step, HOST_BIG), shape, seed)
    row_step = width * point_step + row_padding
    data = wire_bytes(points, fields, point_step, big, row_step)
    decoded = decode_cloud(height, width, fields, big, point_step, row_step, data)
    assert_same_points(decoded, points)
    assert all(decoded.dtype[name].base.isnative for name in decoded.dtype.names)
    assert decoded.dtype.itemsize == point_step


@SETTINGS
@given(layout=layouts(), height=st.integers(1, 4), width=st.integers(1, 6), big=st.one_of(st.none(), st.booleans()),
       seed=st.integers(0, 2**32 - 1))
def test_encode_decode_round_trip(layout, height, width, big, seed):
    fields, point_step = layout
    shape = (width,) if height == 1 else (height, width)
    points = random_points(fields_to_dtype(fields, point_step, HOST_BIG), shape, seed)
    encoded = encode_cloud(points, is_bigendian=big)
    assert (encoded.height, encoded.width, encoded.point_step) == (height, width, point_step)
    assert encoded.row_step == width * point_step and encoded.data.size == encoded.row_step * height
    assert sorted(encoded.fields, key=lambda f: f.name) == sorted(fields, key=lambda f: f.name)
    decoded = decode_cloud(encoded.height, encoded.width, encoded.fields, encoded.is_bigendian, encoded.point_step,
                           encoded.row_step, encoded.data.tobytes())
    assert_same_points(decoded, points)


@pytest.mark.parametrize("datatype", list(PointFieldType))
def test_every_datatype_maps_to_its_numpy_type(datatype):
    dtype = fields_to_dtype([("v", 0, int(datatype), 1)], 8)
    expected = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 8: "f8"}[int(datatype)]
    assert dtype["v"] == np.dtype(expected) and dtype.itemsize == 8
    fields, _ = dtype_to_fields(dtype)
    assert fields == (CloudField("v", 0, int(datatype), 1),)


def test_count_above_one_is_a_subarray_field():
    dtype = fields_to_dtype([CloudField("normal", 4, PointFieldType.FLOAT32, 3)], 16)
    assert dtype["normal"].shape == (3,) and dtype.fields["normal"][1] == 4
    cloud = np.zeros(5, dtype)
    cloud["normal"][:, 2] = 1.0
    assert field_values(cloud, "normal").shape == (5, 3)


def test_organized_cloud_keeps_rows_and_columns():
    xyz = np.arange(2 * 3 * 3, dtype=np.float32).reshape(2, 3, 3)
    cloud = structured_cloud(xyz)
    encoded = encode_cloud(cloud)
    assert (encoded.height, encoded.width) == (2, 3)
    decoded = decode_cloud(2, 3, encoded.fields, encoded.is_bigendian, 12, 36, encoded.data)
    assert decoded.shape == (2, 3)
    np.testing.assert_array_equal(xyz_array(decoded), xyz.reshape(-1, 3))


def test_decode_is_a_view_of_native_data_even_with_row_padding():
    cloud = structured_cloud(np.random.default_rng(0).normal(size=(2, 4, 3)))
    encoded = encode_cloud(cloud)
    rows = np.hstack([encoded.data.reshape(2, -1), np.zeros((2, 8), np.uint8)]).reshape(-1)
    decoded = decode_cloud(2, 4, encoded.fields, HOST_BIG, encoded.point_step, encoded.row_step + 8, rows)
    assert np.shares_memory(decoded, rows)
    assert_same_points(decoded, cloud)


def test_encode_is_zero_copy_for_contiguous_native_clouds():
    cloud = structured_cloud(np.zeros((10, 3)), intensity=np.ones(10, np.float32))
    assert np.shares_memory(encode_cloud(cloud).data, cloud)


def test_foreign_byte_order_is_converted_to_native():
    cloud = structured_cloud(np.arange(9, dtype=np.float64).reshape(3, 3), ring=np.arange(3, dtype=np.uint16))
    encoded = encode_cloud(cloud, is_bigendian=not HOST_BIG)
    assert encoded.is_bigendian is (not HOST_BIG) and not np.shares_memory(encoded.data, cloud)
    decoded = decode_cloud(1, 3, encoded.fields, encoded.is_bigendian, encoded.point_step, encoded.row_step,
                           encoded.data)
    assert decoded["ring"].dtype == np.dtype("=u2")
    np.testing.assert_array_equal(decoded["ring"], [0, 1, 2])


def test_is_dense_is_computed_from_non_finite_coordinates():
    xyz = np.ones((4, 3))
    assert encode_cloud(structured_cloud(xyz)).is_dense
    xyz[2, 1] = np.nan
    assert not encode_cloud(structured_cloud(xyz)).is_dense
    xyz[2, 1] = np.inf
    assert not encode_cloud(structured_cloud(xyz)).is_dense
    assert encode_cloud(np.zeros(3, [("intensity", "f4")])).is_dense


def test_xyz_array_drops_nan_points_unless_asked_not_to():
    xyz = np.arange(15, dtype=np.float64).reshape(5, 3)
    xyz[1, 0] = np.nan
    xyz[3, 2] = -np.inf
    cloud = structured_cloud(xyz)
    kept = xyz_array(cloud)
    assert kept.dtype == np.float32 and kept.shape == (3, 3)
    np.testing.assert_array_equal(kept, xyz[[0, 2, 4]].astype(np.float32))
    assert xyz_array(cloud, remove_nans=False).shape == (5, 3)


def test_xyz_array_converts_float64_and_integer_coordinates():
    cloud = np.zeros(2, [("x", "f8"), ("y", "i2"), ("z", "u1")])
    cloud["x"], cloud["y"], cloud["z"] = [1.5, 2.5], [-3, 4], [5, 6]
    np.testing.assert_array_equal(xyz_array(cloud), [[1.5, -3, 5], [2.5, 4, 6]])


def test_packed_rgb_round_trips():
    rgb = np.array([[255, 0, 0], [1, 2, 3], [0, 128, 255]], np.uint8)
    cloud = structured_cloud(np.zeros((3, 3)), rgb=pack_rgb(rgb))
    encoded = encode_cloud(cloud)
    decoded = decode_cloud(1, 3, encoded.fields, encoded.is_bigendian, encoded.point_step, encoded.row_step,
                           encoded.data)
    np.testing.assert_array_equal(unpack_rgb(decoded), rgb)


def test_structured_cloud_aligns_fields_like_pcl():
    cloud = structured_cloud(np.zeros((2, 3)), ring=np.zeros(2, np.uint16), t=np.zeros(2, np.float32))
    fields, _ = dtype_to_fields(cloud.dtype)
    assert [(f.name, f.offset) for f in fields] == [("x", 0), ("y", 4), ("z", 8), ("ring", 12), ("t", 16)]


def test_empty_cloud_round_trips():
    encoded = encode_cloud(structured_cloud(np.zeros((0, 3))))
    assert (encoded.height, encoded.width, encoded.data.size, encoded.is_dense) == (1, 0, 0, True)
    assert decode_cloud(1, 0, encoded.fields, False, 12, 0, b"").shape == (0,)


# --- malformed input ------------------------------------------------------------------------------------------------


XYZ = [("x", 0, 7, 1), ("y", 4, 7, 1), ("z", 8, 7, 1)]


@pytest.mark.parametrize(
    ("fields", "point_step", "pattern"),
    [
        ([("x", 0, 9, 1)], 4, r"PointField 'x' has unknown datatype 9 \(expected one of INT8=1, .* FLOAT64=8\)"),
        ([("x", 0, 0, 1)], 4, r"PointField 'x' has unknown datatype 0"),
        ([("x", 0, 7, 1), ("x", 4, 7, 1)], 8, r"field name 'x' appears more than once"),
        ([("x", 0, 7, 1), ("y", 2, 7, 1)], 8, r"PointField 'y' \(bytes 2..6\) overlaps 'x' \(bytes 0..4\)"),
        ([("n", 0, 7, 3), ("y", 8, 7, 1)], 16, r"PointField 'y' \(bytes 8..12\) overlaps 'n' \(bytes 0..12\)"),
        (XYZ, 8, r"point_step 8 is smaller than the fields' extent: 'z' ends at byte 12"),
        ([("x", 0, 7, 0)], 4, r"PointField 'x' has count 0"),
        ([("", 0, 7, 1)], 4, r"fields\[0\].name must be a non-empty string"),
        ([("x", 0)], 4, r"fields\[0\]: expected \(name, offset, datatype\[, count\]\)"),
        ([object()], 4, r"fields\[0\] is not a PointField"),
    ],
)
def test_bad_field_layouts_are_explained(fields, point_step, pattern):
    with pytest.raises(MessageFormatError, match=pattern):
        decode_cloud(1, 1, fields, False, point_step, point_step, bytes(point_step))


def test_row_step_smaller_than_a_row_is_rejected():
    with pytest.raises(MessageFormatError, match=r"row_step 23 is smaller than one row: width 2 x point_step 12 = 24"):
        decode_cloud(1, 2, XYZ, False, 12, 23, bytes(24))


def test_short_data_is_rejected_with_the_numbers():
    with pytest.raises(MessageFormatError, match=r"data has 47 bytes, expected row_step 24 x height 2 = 48"):
        decode_cloud(2, 2, XYZ, False, 12, 24, bytes(47))


def test_missing_coordinate_field_lists_what_is_there():
    with pytest.raises(MessageFormatError, match=r"no field 'z' \(fields: x, y\)"):
        xyz_array(np.zeros(3, [("x", "f4"), ("y", "f4")]))


def test_unsupported_numpy_types_cannot_be_encoded():
    with pytest.raises(MessageFormatError, match=r"field 'id' has element type int64, which PointField cannot express"):
        encode_cloud(np.zeros(3, [("x", "f4"), ("id", "i8")]))
    with pytest.raises(MessageFormatError, match="structured dtype"):
        encode_cloud(np.zeros((3, 3), np.float32))
    with pytest.raises(MessageFormatError, match=r"\(N,\) or \(H, W\)"):
        encode_cloud(np.zeros((1, 2, 3), [("x", "f4")]))


# --- the same codec on rosbags' message dataclasses -------------------------------------------------------------------


def test_rosbags_pointcloud2_round_trips_through_the_core_codec():
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_JAZZY)
    cloud_t, field_t = store.types["sensor_msgs/msg/PointCloud2"], store.types["sensor_msgs/msg/PointField"]
    header_t, time_t = store.types["std_msgs/msg/Header"], store.types["builtin_interfaces/msg/Time"]
    xyz = np.random.default_rng(5).normal(size=(50, 3))
    xyz[7] = np.nan
    cloud = structured_cloud(xyz, intensity=np.linspace(0, 1, 50, dtype=np.float32))
    enc = encode_cloud(cloud)
    msg = cloud_t(header=header_t(stamp=time_t(sec=1, nanosec=5), frame_id="lidar"), height=enc.height,
                  width=enc.width, fields=[field_t(name=f.name, offset=f.offset, datatype=f.datatype, count=f.count)
                                           for f in enc.fields],
                  is_bigendian=enc.is_bigendian, point_step=enc.point_step, row_step=enc.row_step, data=enc.data,
                  is_dense=enc.is_dense)
    back = store.deserialize_cdr(store.serialize_cdr(msg, cloud_t.__msgtype__), cloud_t.__msgtype__)
    assert back.is_dense is False
    decoded = decode_cloud(back.height, back.width, back.fields, back.is_bigendian, back.point_step, back.row_step,
                           back.data)
    assert_same_points(decoded, cloud)
    assert xyz_array(decoded).shape == (49, 3)
