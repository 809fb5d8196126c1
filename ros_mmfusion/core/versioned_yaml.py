"""Reading the suite's own YAML files, each tagged with a versioned ``format`` key (``ros_mmfusion/<kind>/v<N>``).

One reader for all of them (sensor calibration, topomap manifests, model packages): it parses, checks the tag, and
turns every failure into one ConfigError line naming the file.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ros_mmfusion.core.errors import ConfigError


def read_versioned_yaml(path: str | Path, expected_format: str, what: str) -> dict[str, Any]:
    """The mapping in YAML file ``path`` whose ``format`` is ``expected_format``.

    ``what`` names the kind of file in messages ("calibration", "topomap manifest", ...). ConfigError when the file
    is missing or unreadable, is not valid YAML, is not a mapping, or carries another format tag.
    """
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} {path}: not valid YAML ({' '.join(str(exc).split())})") from None
    except OSError as exc:
        raise ConfigError(f"{what} {path}: cannot be read ({exc.strerror or exc})") from None
    found = data.get("format") if isinstance(data, dict) else None
    if found != expected_format:
        raise ConfigError(f"{what} {path}: not a {what} (expected format: {expected_format}, found "
                          f"{'no format key' if found is None else repr(found)})")
    return data
