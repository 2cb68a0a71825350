#!/usr/bin/env python3
"""Compile time: ``demand_response.compiler.compile_project`` into a temporary directory.

The project's solc is resolved as ``dr compile`` resolves it (SOLC_BINARY, py-solc-x's
folder, PATH, then solcjs through ``tools/solc-npm``). The solcjs adapter is always timed;
a native solc 0.8.24 binary is timed too when one exists on the machine, else "n/a".
Nothing in build/ or the package is touched.

    .venv/bin/python bench/bench_compile.py [--repeat 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, write_json  # noqa: E402

from demand_response import compiler  # noqa: E402


def _native_candidates() -> list[Path]:
    """Executables that are a real solc (not the npm adapter), if any."""
    found = []
    for p in [os.environ.get("SOLC_BINARY"), shutil.which("solc"),
              str(compiler.solcx_install_folder() / f"solc-v{compiler.SOLC_VERSION}"),
              str(Path.home() / ".solcx" / f"solc-v{compiler.SOLC_VERSION}")]:
        if not p:
            continue
        path = Path(p)
        if not path.is_file() or path.resolve() == compiler.NPM_ADAPTER.resolve():
            continue
        try:
            with open(path.resolve(), "rb") as fh:
                head = fh.read(4)
        except OSError:
            continue
        if head == b"\x7fELF" and compiler._binary_version(path) == compiler.SOLC_VERSION:
            found.append(path)
    return found


def _time_compile(binary: Path | None, repeat: int) -> list[float]:
    times = []
    saved = os.environ.get("SOLC_BINARY")
    try:
        if binary is not None:
            os.environ["SOLC_BINARY"] = str(binary)
        for _ in range(repeat):
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                compiler.compile_project(build_dir=Path(tmp) / "build", package_dir=Path(tmp) / "pkg")
                times.append(time.perf_counter() - t0)
    finally:
        if saved is None:
            os.environ.pop("SOLC_BINARY", None)
        else:
            os.environ["SOLC_BINARY"] = saved
    return times


def run(repeat: int = 2, log=print) -> dict:
    # Warm the imports (brownie, solcx) so they are not counted as compiling.
    import brownie.project.compiler  # noqa: F401
    import solcx  # noqa: F401

    t0 = time.perf_counter()
    version = compiler._binary_version(compiler.NPM_ADAPTER)
    startup = time.perf_counter() - t0
    times = _time_compile(compiler.NPM_ADAPTER, repeat)
    out = {
        "contract": "contracts/DemandReduction.sol",
        "settings": {"solc": compiler.SOLC_VERSION, "evm": compiler.EVM_VERSION, "optimizer_runs": compiler.OPTIMIZER_RUNS,
                     "via_ir": compiler.VIA_IR},
        "solcjs": {"adapter": str(compiler.NPM_ADAPTER.relative_to(ROOT)), "version": version,
                   "version_call_s": round(startup, 3), "compile_s": round(statistics.median(times), 2),
                   "runs_s": [round(t, 2) for t in times]},
        "resolved_by_default": None,
        "native": None,
    }
    try:
        out["resolved_by_default"] = compiler.resolve_solc().origin
    except compiler.CompilerError as exc:
        out["resolved_by_default"] = f"error: {exc}"
    log(f"  compile: solcjs via adapter {out['solcjs']['compile_s']} s (median of {repeat})")
    natives = _native_candidates()
    if natives:
        times = _time_compile(natives[0], repeat)
        out["native"] = {"binary": str(natives[0]), "compile_s": round(statistics.median(times), 2),
                         "runs_s": [round(t, 2) for t in times]}
        out["speedup_native"] = round(out["solcjs"]["compile_s"] / out["native"]["compile_s"], 1)
        log(f"  compile: native {natives[0]} {out['native']['compile_s']} s")
    else:
        log("  compile: no native solc 0.8.24 on this machine (n/a)")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "bench" / "compile.json"))
    args = ap.parse_args()
    write_json(args.out, run(args.repeat))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
