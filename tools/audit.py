#!/usr/bin/env python3
"""Static analysis of contracts/ with slither, offline, through the project's own solc.

    .venv/bin/python tools/audit.py            # writes docs/audit/slither.{txt,json}

Slither is not a dependency of the package: it lives in its own venv (default
``.venv-audit``, created by ``python3 -m venv .venv-audit && .venv-audit/bin/pip install
slither-analyzer==0.11.6``) because it installs a ``solc`` wrapper (solc-select) that would
shadow the project's compiler resolution on PATH. Override with ``SLITHER=/path/to/slither``.

How it compiles: crytic-compile's default mode calls ``solc --combined-json``, which the
project's solcjs adapter (tools/solc-npm) does not speak. So this script writes a solc
standard-JSON input with the project's exact settings (solc 0.8.24, viaIR, the optimizer
runs of compiler.py, shanghai; the contract does not compile without viaIR) and runs slither on it with
``--compile-force-framework solc-json --solc <resolve_solc().path>``: the adapter only
needs ``--version`` and ``--standard-json``. Nothing is downloaded.

Exit status: 0 when every High or Medium result is a documented false positive
(ACCEPTED below, explained in docs/security.md, "Static analysis"); 1 when any other High
or Medium result appears; 2 when slither or the compiler cannot run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from demand_response.compiler import EVM_VERSION, OPTIMIZER_RUNS, REMAPPINGS, VIA_IR, resolve_solc  # noqa: E402

OUT_DIR = ROOT / "docs" / "audit"

#: (detector, element name) pairs that are documented false positives (docs/security.md).
#: A new result of the same detector on another element still fails the audit.
ACCEPTED = {
    # mapping(uint256 => TickBook.Book) book arrays: storage is zero-initialised and
    # written per request through TickBook.place/cancel; slither does not model writes
    # through a storage reference handed to a library.
    ("uninitialized-state", "_books"),
    # The facet (DemandReductionFacet) shares the core's storage by delegatecall and only reads
    # these two: the core writes them (proveLevelPrefix; commitBids, postBond, revealBids,
    # meterDelivery, settleDelivery). slither judges each contract alone, so in the facet they
    # look never written.
    ("uninitialized-state", "_levelProof"),
    ("uninitialized-state", "_participants"),
    # The same for relayed bids' replay bitmap: the core's submitSignedBids writes it; the facet
    # only reads it (signedBidsUsed).
    ("uninitialized-state", "_signedBidsUsed"),
    # tick = p / tickWei; tick * tickWei != p is the deliberate "price on the grid" test.
    ("divide-before-multiply", "_place"),
    # Accumulators and a memory struct that rely on Solidity's zero default for locals.
    ("uninitialized-local", "_select.c"),
    ("uninitialized-local", "_claim.claimedWatts"),
    ("uninitialized-local", "_claim.paid"),
    ("uninitialized-local", "_page.found"),
    # A relayed entry's skip reason: 0 (placed) unless a branch sets one.
    ("uninitialized-local", "submitSignedBids.skipped"),
    # Tuple reads that take only the fields they need: the queue walk needs the packed bid,
    # not its bidder or storage key; the lens's filter needs the bidder, not the count.
    ("unused-return", "_walkLevel"),
    ("unused-return", "_page"),
    # ECDSA.tryRecoverCalldata's third value only details the error, and any error is refused
    # whole (BadSignature).
    ("unused-return", "submitSignedBids"),
    # claimAndPay pays each winner after marking its bid claimed and booking the payout (checks,
    # effects, then the call), with 10,000 gas (ether) or 100,000 (a token's transfer); it holds
    # no lock: a re-entrant claimAndPay or claim of a later bid marks it claimed, which the loop
    # then skips, and a re-entrant withdraw (locked) finds the pushed payment never credited: no
    # bid is paid twice (tests/contract/test_claim_and_pay.py, ReenterPay;
    # tests/contract/test_token_settlement.py, a token hook).
    ("reentrancy-eth", "_claim"),
}


def _slither() -> str:
    explicit = os.environ.get("SLITHER")
    candidates = [explicit] if explicit else [str(ROOT / ".venv-audit" / "bin" / "slither"), shutil.which("slither")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise SystemExit(
        "audit: slither not found; create its venv: python3 -m venv .venv-audit && "
        ".venv-audit/bin/pip install slither-analyzer==0.11.6 (or set SLITHER=/path/to/slither)"
    )


def _standard_json() -> dict:
    sources = {
        p.relative_to(ROOT).as_posix(): {"content": p.read_text()} for p in sorted((ROOT / "contracts").rglob("*.sol"))
    }
    return {
        "language": "Solidity",
        "sources": sources,
        "settings": {
            "optimizer": {"enabled": True, "runs": OPTIMIZER_RUNS},
            "evmVersion": EVM_VERSION,
            "viaIR": VIA_IR,
            "remappings": list(REMAPPINGS),  # OpenZeppelin from node_modules, as dr compile
            "outputSelection": {
                "*": {"*": ["abi", "evm.bytecode", "evm.deployedBytecode", "userdoc", "devdoc"], "": ["ast"]}
            },
        },
    }


def _element_name(result: dict) -> str:
    """``name`` of the first element; ``function.local`` for a local variable."""
    for element in result.get("elements", []):
        parent = element.get("type_specific_fields", {}).get("parent", {})
        if element.get("type") == "node":
            return parent.get("name", "")
        if element.get("type") == "variable" and parent.get("type") == "function":
            return f"{parent.get('name', '')}.{element.get('name', '')}"
        if element.get("type") in ("variable", "function"):
            return element.get("name", "")
    return ""


def run() -> int:
    solc = resolve_solc()
    slither = _slither()
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="dr-audit-") as tmp:
        input_path = Path(tmp) / "standard-input.json"
        input_path.write_text(json.dumps(_standard_json()))
        json_path = Path(tmp) / "slither.json"
        cmd = [slither, str(input_path), "--compile-force-framework", "solc-json", "--solc", str(solc.path),
               "--json", str(json_path), "--no-fail-pedantic"]
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1800,
                              env={**os.environ, "PYTHONWARNINGS": "ignore"})
        if not json_path.exists():
            sys.stderr.write(proc.stdout + proc.stderr)
            print("audit: slither did not produce a report", file=sys.stderr)
            return 2
        report = json.loads(json_path.read_text())
    if not report.get("success"):
        print(f"audit: slither failed: {report.get('error')}", file=sys.stderr)
        return 2
    version = subprocess.run([slither, "--version"], capture_output=True, text=True).stdout.strip()
    results = report.get("results", {}).get("detectors", [])

    # Keep the report reproducible: drop absolute paths and the temp file name.
    text = (proc.stdout + proc.stderr).replace(str(ROOT) + "/", "")
    lines = [line for line in text.splitlines() if "dr-audit-" not in line and "running" not in line]
    counts: dict[str, int] = {}
    failing, accepted = [], []
    for r in results:
        counts[r["impact"]] = counts.get(r["impact"], 0) + 1
        if r["impact"] in ("High", "Medium"):
            key = (r["check"], _element_name(r))
            (accepted if key in ACCEPTED else failing).append((key, r))
    summary = [
        f"slither {version} (crytic-compile solc-json mode) on contracts/ with solc {solc.version} "
        f"via {solc.origin} ({solc.path.relative_to(ROOT) if solc.path.is_relative_to(ROOT) else solc.path}), "
        f"viaIR={VIA_IR}, optimizer runs={OPTIMIZER_RUNS}, evmVersion={EVM_VERSION}",
        "results by impact: " + ", ".join(f"{k}={v}" for k, v in sorted(counts.items())),
        f"High/Medium documented false positives (docs/security.md): {len(accepted)}",
        f"High/Medium NOT accepted: {len(failing)}",
    ]
    for (check, name), r in failing:
        summary.append(f"  UNACCEPTED {r['impact']} {check} on {name}: {r['description'].strip().splitlines()[0]}")
    (OUT_DIR / "slither.txt").write_text("\n".join(summary + ["", *lines]) + "\n")
    brief = [
        {"check": r["check"], "impact": r["impact"], "confidence": r["confidence"],
         "element": _element_name(r), "accepted_false_positive": (r["check"], _element_name(r)) in ACCEPTED,
         "description": r["description"].replace(str(ROOT) + "/", "").strip()}
        for r in results
    ]
    (OUT_DIR / "slither.json").write_text(json.dumps({"slither": version, "counts": counts, "results": brief},
                                                     indent=1, sort_keys=True) + "\n")
    print("\n".join(summary))
    print(f"reports: {OUT_DIR.relative_to(ROOT)}/slither.txt, slither.json")
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(run())
