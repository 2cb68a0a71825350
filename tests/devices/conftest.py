"""Fixtures for the devices tier: a real Mosquitto broker per test, a fake clock, config files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from demand_response.devices import FakeClock, parse_config
from demand_response.devices.config import DevicesConfig


def _mosquitto_missing() -> bool:
    return shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Any]:
    """A Mosquitto broker on a free loopback port, with its own config file."""
    if _mosquitto_missing():
        pytest.skip("mosquitto is not installed (make system-deps installs it as root)")
    from demand_response.devices.peers import Mosquitto

    server = Mosquitto(tmp_path / "mosquitto").start()
    yield server
    server.stop()


@pytest.fixture
def clock() -> FakeClock:
    """A clock at the real time that moves only when the test says so."""
    return FakeClock()


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[..., DevicesConfig]:
    """Build a validated config whose command log and state file live in tmp_path."""
    def build(devices: list[dict[str, Any]], **top: Any) -> DevicesConfig:
        data = {"revert_margin_s": 2, "timeout_s": 3, "command_log": str(tmp_path / "commands.jsonl"),
                "state_file": str(tmp_path / "state.json"), "devices": devices, **top}
        (tmp_path / "devices.json").write_text(json.dumps(data), encoding="utf-8")
        return parse_config(data, tmp_path / "devices.json")

    return build


def _wait_for(predicate: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> Any:
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def wait_for() -> Callable[..., Any]:
    """Poll a predicate until it is truthy (real protocol peers answer asynchronously)."""
    return _wait_for
