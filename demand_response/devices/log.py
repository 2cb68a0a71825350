"""The command log: one JSON line per command, with the device's answer as delivery evidence.

The file is append-only. Each record is written with a single ``write`` on a descriptor
opened with ``O_APPEND`` and then ``fsync``-ed, so records never interleave and a power cut
loses at most the record being written. A torn last line (a crash mid-write) is skipped by
:meth:`CommandLog.records` and fenced off by a newline before the next record.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any, Iterator


class CommandLog:
    """Append-only JSON-lines file of device commands and their acknowledgements."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def append(self, record: dict[str, Any]) -> None:
        """Write one record durably."""
        line = json.dumps(record, sort_keys=True, separators=(",", ":"), default=str) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                size = os.fstat(fd).st_size
                if size and not self._ends_with_newline(size):
                    line = "\n" + line  # fence off a torn record left by a crash
                os.write(fd, line.encode("utf-8"))
                os.fsync(fd)
            finally:
                os.close(fd)

    def _ends_with_newline(self, size: int) -> bool:
        with open(self.path, "rb") as handle:
            handle.seek(size - 1)
            return handle.read(1) == b"\n"

    def records(self) -> Iterator[dict[str, Any]]:
        """Every complete record, oldest first (torn lines are skipped)."""
        try:
            handle = open(self.path, encoding="utf-8")
        except FileNotFoundError:
            return
        with handle:
            for line in handle:
                line = line.strip()
                if not line:
                    continue
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict):
                    yield record


def describe(record: dict[str, Any]) -> str:
    """One readable line for a command-log record (what the demo and a CLI print)."""
    at = str(record.get("at_utc", ""))[11:19]
    device = record.get("device") or "-"
    command = record.get("command", "?")
    params = record.get("params") or {}
    if command == "plan":
        steps = ", ".join(f"{s['device']} {s['shed_w'] / 1000:.3f} kW" for s in params.get("steps", []))
        text = f"plan {params.get('accepted_w', 0) / 1000:.3f} kW: {steps or 'no device'}"
        if params.get("shortfall_w"):
            text += f" ({params['shortfall_w'] / 1000:.3f} kW not covered)"
    elif command == "shed":
        how = "off" if params.get("limit_w") is None else f"cap {params['limit_w'] / 1000:.3f} kW"
        text = f"shed {device} ({how}, device reverts itself after {params.get('revert_after_s')} s)"
    elif command == "event_done":
        text = "event over: " + ", ".join(f"{d} {s}" for d, s in (params.get("steps") or {}).items())
    else:
        text = f"{command} {device}"
    outcome = "acknowledged" if record.get("ok") else f"FAILED: {record.get('error')}"
    if command in ("shed", "restore"):
        text += f": {outcome}"
    return f"{at} request {record.get('request_id')}: {text}"
