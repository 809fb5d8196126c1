"""Where the golden parity fixtures live: ``$MMFUSION_FIXTURES``, else ``shared/fixtures`` beside the checkout (as in
CI, where the clone has ``shared/`` next to it)."""
from __future__ import annotations

import os
from pathlib import Path

FIXTURES = Path(os.environ.get("MMFUSION_FIXTURES", Path(__file__).resolve().parents[2] / "shared" / "fixtures"))

REAL = Path(os.environ.get("MMFUSION_REAL_DATA", Path(__file__).resolve().parents[2] / "shared" / "real"))
"""Small real sensor samples (KITTI, nuScenes, RGB-D, ...; ``../shared/real``, see its README for the licences)."""


def require_real(name: str) -> Path:
    """``REAL / name``; the calling test is skipped with the reason when it is absent, and fails under ``CI=true``
    (where the fixtures must be present)."""
    import pytest

    path = REAL / name
    if not path.exists():
        reason = f"real sample {path} not available (../shared/real)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return path
