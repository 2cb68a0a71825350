"""Committed contract artifacts (ABI and bytecode).

The JSON files beside this module are written by ``dr compile`` and committed, so a
consumer board needs no compiler.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..files import atomic_write_text  # noqa: F401 - its old home; use demand_response.files

PACKAGE_ARTIFACT_DIR = Path(__file__).resolve().parent


@lru_cache(maxsize=None)
def load_artifact(name: str = "DemandReduction") -> dict[str, Any]:
    """The committed ABI/bytecode artifact of contract ``name``."""
    path = PACKAGE_ARTIFACT_DIR / f"{name}.json"
    with path.open(encoding="utf-8") as handle:
        return json.load(handle)
