"""The one reader of the suite's versioned YAML files: every failure is one ConfigError line naming the file."""
from __future__ import annotations

import pytest

from ros_mmfusion.core.calibration import load_calibration
from ros_mmfusion.core.errors import ConfigError
from ros_mmfusion.core.versioned_yaml import read_versioned_yaml

FORMAT = "ros_mmfusion/thing/v1"


def test_a_file_of_the_expected_format_is_read(tmp_path):
    path = tmp_path / "thing.yaml"
    path.write_text(f"format: {FORMAT}\nvalue: 3\n")
    assert read_versioned_yaml(path, FORMAT, "thing") == {"format": FORMAT, "value": 3}


@pytest.mark.parametrize("text, message", [
    ("format: ros_mmfusion/thing/v2\n", "not a thing (expected format: ros_mmfusion/thing/v1, found "
                                        "'ros_mmfusion/thing/v2')"),
    ("value: 3\n", "found no format key"),
    ("- a list\n", "found no format key"),
    ("format: [unclosed\n", "not valid YAML"),
])
def test_a_bad_file_is_one_line_naming_it(tmp_path, text, message):
    path = tmp_path / "thing.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        read_versioned_yaml(path, FORMAT, "thing")
    assert str(info.value).startswith(f"thing {path}: ") and message in str(info.value)
    assert "\n" not in str(info.value)


def test_a_missing_calibration_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="calibration .*missing.yaml: cannot be read"):
        load_calibration(tmp_path / "missing.yaml")
