"""The service must run where torch is not installed: building the app never imports it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_building_the_app_does_not_import_torch(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from core.settings import Settings\n"
        "from service.main import create_app\n"
        f"create_app(Settings(home={str(tmp_path)!r}, seed_bundled=False))\n"
        "import models.session, service.reloader, service.batching, core.images\n"
        "loaded = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))\n"
        "print(loaded)\n"
        "sys.exit(1 if loaded else 0)\n"
    )

    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )

    assert result.returncode == 0, result.stdout + result.stderr
