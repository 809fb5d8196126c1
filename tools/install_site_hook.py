#!/usr/bin/env python3
"""Install a site hook into the venv so every python there uses the suite's Fast DDS profile by default.

A receiving process needs the large shared-memory segment of config/dds/fastdds_large_messages.xml to get big images
and clouds from another process, so the profile must apply to any rclpy program run from the venv (a user's own
subscriber, a test peer), not only to ours. The hook only sets the variables when the user has set neither.
"""
from __future__ import annotations

import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROFILE = ROOT / "config" / "dds" / "fastdds_large_messages.xml"
HOOK = "mmfusion_dds_profile.pth"


def main() -> int:
    site = Path(sysconfig.get_paths()["purelib"])
    line = (
        "import os; "
        "('FASTRTPS_DEFAULT_PROFILES_FILE' in os.environ or 'FASTDDS_DEFAULT_PROFILES_FILE' in os.environ "
        "or os.environ.get('RMW_IMPLEMENTATION', 'rmw_fastrtps_cpp')[:12] != 'rmw_fastrtps') "
        f"or os.environ.update(FASTRTPS_DEFAULT_PROFILES_FILE={str(PROFILE)!r}, "
        f"FASTDDS_DEFAULT_PROFILES_FILE={str(PROFILE)!r})\n"
    )
    target = site / HOOK
    if not target.exists() or target.read_text() != line:
        target.write_text(line)
        print(f"install_site_hook: {target} -> {PROFILE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
