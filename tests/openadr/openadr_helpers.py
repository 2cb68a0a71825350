"""Helpers shared by the OpenADR tests (fixtures live in conftest.py)."""

from __future__ import annotations

import time
from typing import Callable

import pytest

#: Short OpenLEADR intervals keep each test to a few seconds (production: 10 s polls, 60 s reports).
POLL_S, REPORT_S = 1.0, 1.0
CAP = 128 * 10**12


def wait_for(check: Callable[[], object], timeout: float = 10.0, what: str = "condition") -> object:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")
