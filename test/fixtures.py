"""Where the golden parity fixtures live: ``$MMFUSION_FIXTURES``, else ``shared/fixtures`` beside the checkout (as in
CI, where the clone has ``shared/`` next to it)."""
from __future__ import annotations

import os
from pathlib import Path

FIXTURES = Path(os.environ.get("MMFUSION_FIXTURES", Path(__file__).resolve().parents[2] / "shared" / "fixtures"))
