"""The actuation demo: real broker, simulated plugs, the same actuator as a home."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from demand_response.devices.demo import run_demo

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _need_mosquitto():
    if shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists():
        pytest.skip("mosquitto is not installed (make system-deps installs it as root)")


def test_the_demo_sheds_both_plugs_during_the_event_and_restores_them_after(tmp_path):
    lines: list[str] = []
    result = run_demo(tmp_path, say=lines.append)
    assert result["during"]["water-heater"] is False and result["during"]["dryer"] is False
    assert result["during"]["power_w"] == {"water-heater": 0.0, "dryer": 0.0}
    assert result["after"] == {"water-heater": True, "dryer": True}
    log_lines = [line for line in lines if line.startswith("  ")]
    assert any("shed water-heater (off, device reverts itself after 420 s): acknowledged" in line for line in log_lines)
    assert any("restore dryer: acknowledged" in line for line in log_lines)
    assert "event over: dryer restored, water-heater restored" in log_lines[-1]


def test_the_demo_command_prints_the_log_and_exits_0():
    out = subprocess.run([sys.executable, "-m", "demand_response.devices", "demo"], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "devices: event over: water heater on, dryer on" in out.stdout
