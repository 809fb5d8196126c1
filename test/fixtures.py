"""Where the golden parity fixtures live: ``$MMFUSION_FIXTURES``, else ``shared/fixtures`` beside the checkout (as in
CI, where the clone has ``shared/`` next to it)."""
from __future__ import annotations

import os
from pathlib import Path

FIXTURES = Path(os.environ.get("MMFUSION_FIXTURES", Path(__file__).resolve().parents[2] / "shared" / "fixtures"))

REAL = Path(os.environ.get("MMFUSION_REAL", Path(__file__).resolve().parents[2] / "shared" / "real"))
"""Real sensor samples (``../shared/real``, README there): test fixtures, never copied into the repository."""


def require_real(*parts: str) -> Path:
    """``REAL / parts``; the test is skipped with the reason when it is absent, and fails when ``CI=true`` (where the
    samples must be there)."""
    import pytest

    path = REAL.joinpath(*parts)
    if not path.exists():
        reason = f"real sensor sample {path} not available (../shared/real beside the checkout)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return path
