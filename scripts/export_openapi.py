"""Write openapi/openapi.json from the code (a test fails when the tracked file drifts)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def spec_text() -> str:
    from app.main import create_app

    return json.dumps(create_app().openapi(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    out = ROOT / "openapi" / "openapi.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(spec_text())
    print(f"wrote {out}")
