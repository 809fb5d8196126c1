"""The CARLA label map (core/label_maps.py): the documented 0.9.14+ table, the suite <-> CARLA maps, and the palette
round trip the CARLA convention writes and ``mmfusion eval --label-map carla`` reads."""
from __future__ import annotations

import numpy as np
import pytest

from ros_mmfusion.core import labels as L
from ros_mmfusion.core.errors import ConfigError
from ros_mmfusion.core.label_maps import CARLA, get_label_map


def test_carla_table_is_the_0_9_14_tag_list_with_its_cityscapes_colours():
    assert [c.id for c in CARLA.classes] == list(range(29))
    by_id = {c.id: c for c in CARLA.classes}
    # spot checks against CARLA's ref_sensors table (0.9.14+ ids; 0.9.13 had road = 7, car = 10)
    assert (by_id[1].name, by_id[1].color) == ("Roads", (128, 64, 128))
    assert (by_id[12].name, by_id[12].color) == ("Pedestrian", (220, 20, 60))
    assert (by_id[14].name, by_id[14].color) == ("Car", (0, 0, 142))
    assert (by_id[24].name, by_id[24].color) == ("RoadLine", (157, 234, 50))
    assert (by_id[28].name, by_id[28].color) == ("GuardRail", (180, 165, 180))


def test_classes_without_a_suite_counterpart_read_as_ignore():
    lut = CARLA.to_suite()
    ignored = {c.id for c in CARLA.classes if c.suite is None}
    assert ignored == {5, 7, 8, 15, 16, 17, 18, 20, 21, 22, 23, 25, 26, 27, 28}
    assert all(lut[i] == L.IGNORE_INDEX for i in ignored)
    assert lut[24] == L.ROAD and lut[13] == L.CYCLIST and lut[19] == L.CYCLIST and lut[14] == L.CAR
    assert lut[200] == L.IGNORE_INDEX  # an id past the table


def test_suite_labels_survive_the_palette_round_trip_except_the_indoor_ones():
    rng = np.random.default_rng(0)
    ids = rng.integers(0, len(L.LABELS), (48, 64)).astype(np.uint8)
    rgb = CARLA.encode_colours(ids)
    back, unknown = CARLA.decode_colours(rgb)
    assert unknown == 0
    indoor = np.isin(ids, [L.FLOOR, L.CEILING, L.DOOR])
    assert indoor.any() and (~indoor).any()
    np.testing.assert_array_equal(back[~indoor], ids[~indoor])
    assert (back[indoor] == L.IGNORE_INDEX).all()  # written as CARLA's Other, which has no counterpart
    # the colours are CARLA's own: a car pixel is (0, 0, 142)
    assert tuple(rgb[ids == L.CAR][0]) == (0, 0, 142)


def test_unknown_colours_are_ignore_and_counted_never_snapped_to_a_near_class():
    rgb = CARLA.encode_colours(np.full((4, 5), L.CAR, np.uint8))
    rgb[0, 0] = (0, 0, 141)  # one off the car colour (a JPEG artefact): not a car
    rgb[1, 1] = (1, 2, 3)
    ids, unknown = CARLA.decode_colours(rgb)
    assert unknown == 2
    assert ids[0, 0] == ids[1, 1] == L.IGNORE_INDEX
    assert (ids[ids != L.IGNORE_INDEX] == L.CAR).sum() == 18


def test_every_suite_class_has_a_carla_id_to_be_written_as():
    lut = CARLA.from_suite()
    assert {lb.name: int(lut[lb.id]) for lb in L.LABELS} == CARLA.write


def test_unknown_label_map_is_a_config_error_naming_the_known_ones():
    assert get_label_map("carla") is CARLA
    with pytest.raises(ConfigError, match="unknown label map 'gazebo'.*carla"):
        get_label_map("gazebo")


def test_bad_palette_image_shape_is_refused():
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        CARLA.decode_colours(np.zeros((4, 4), np.uint8))

