"""Build the project's wheel from a clean copy of the sources, without touching the work tree.

    python tools/iot/build_wheel.py OUTDIR      # prints the wheel's path

setuptools writes ``build/`` and ``*.egg-info`` next to the sources it builds, so the
sources the wheel needs (``pyproject.toml``, ``README.md``, ``demand_response/``) are copied to
a temporary folder first. The build uses the running interpreter's setuptools and wheel
(``--no-build-isolation``: nothing is downloaded). The wheel is pure Python
(``py3-none-any``): the same file installs on x86-64 and on aarch64 boards.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def build_wheel(out_dir: Path, root: Path = ROOT) -> Path:
    """Build ``demand_response-*.whl`` into ``out_dir``; return its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="dr-wheel-") as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        for name in ("pyproject.toml", "README.md"):
            shutil.copy2(root / name, src / name)
        shutil.copytree(root / "demand_response", src / "demand_response",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        before = set(out_dir.glob("demand_response-*.whl"))
        for old in before:
            old.unlink()
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--disable-pip-version-check",
             "-q", "-w", str(out_dir), str(src)],
            capture_output=True, text=True, timeout=300,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"pip wheel failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    wheels = sorted(out_dir.glob("demand_response-*.whl"))
    if len(wheels) != 1:
        raise RuntimeError(f"expected one wheel in {out_dir}, found {wheels}")
    return wheels[0]


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: build_wheel.py OUTDIR")
    print(build_wheel(Path(sys.argv[1]).resolve()))
