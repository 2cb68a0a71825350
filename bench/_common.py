"""Shared helpers for the benchmarks: machine description, percentiles, JSON output, child RSS."""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PY = sys.executable


def machine() -> dict[str, Any]:
    """Where and when this ran: enough to tell two reports apart."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0, 0, 0)
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "host": platform.node(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "memory_gib": mem_gib,
        "python": platform.python_version(),
        "load_average_at_start": [round(x, 2) for x in load],
    }


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..1) of ``values``."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, int(round(q * (len(ordered) - 1)))))]


def summary(values: Sequence[float], digits: int = 3) -> dict[str, Any]:
    """n, p50, p95, max and mean of a latency sample (seconds)."""
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50_s": round(percentile(values, 0.5), digits),
        "p95_s": round(percentile(values, 0.95), digits),
        "max_s": round(max(values), digits),
        "mean_s": round(statistics.fmean(values), digits),
    }


_HWM_SUFFIX = "\nimport sys as _s\n_s.stderr.write([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0])"


def run_python_measured(code: str, cwd: str | Path | None = None, env: dict | None = None,
                        timeout: float = 120) -> tuple[float, float | None, int]:
    """Run ``python -c CODE``: (wall seconds, peak RSS MiB, exit status).

    The peak is the child's own ``VmHWM``, read by the child as its last statement:
    ``wait4``'s ``ru_maxrss`` is useless here because Linux carries the parent's RSS
    over a fork into it.
    """
    t0 = time.perf_counter()
    proc = subprocess.run([PY, "-c", code + _HWM_SUFFIX], cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, timeout=timeout, check=False)
    wall = time.perf_counter() - t0
    peak = None
    for line in proc.stderr.splitlines():
        if line.startswith("VmHWM:"):
            peak = int(line.split()[1]) / 1024
    return wall, peak, proc.returncode


def proc_status_mib(pid: int, field: str = "VmHWM") -> float | None:
    """A memory field of /proc/<pid>/status in MiB (VmHWM = peak RSS, VmRSS = current)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def write_json(path: str | Path, data: Any) -> None:
    """Write ``data`` as indented JSON atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def self_peak_mib() -> float:
    """This process's peak RSS in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
