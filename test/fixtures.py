"""Where the golden parity fixtures live: ``$MMFUSION_FIXTURES``, else ``shared/fixtures`` beside the checkout (as in
CI, where the clone has ``shared/`` next to it)."""
from __future__ import annotations

import os
from pathlib import Path

FIXTURES = Path(os.environ.get("MMFUSION_FIXTURES", Path(__file__).resolve().parents[2] / "shared" / "fixtures"))

REAL = Path(os.environ.get("MMFUSION_REAL_DATA", Path(__file__).resolve().parents[2] / "shared" / "real"))
"""Real sensor samples (``../shared/real``; its README states origin and licence of each)."""


def real_data(*parts: str) -> Path:
    """``REAL / parts``; skips the test with the reason when it is absent, or fails when ``CI=true`` (CI has it)."""
    import pytest

    path = REAL.joinpath(*parts)
    if not path.exists():
        reason = f"real sensor sample {path} is absent (../shared/real beside the checkout)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return path
