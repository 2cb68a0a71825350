"""Resolve a Solidity compiler and compile the contracts to brownie-format artifacts.

Resolution order (first hit wins):

1. ``SOLC_BINARY``: an explicit path to a solc executable;
2. ``solc-v<SOLC_VERSION>`` in py-solc-x's install folder (``$SOLCX_BINARY_PATH`` or
   ``~/.solcx``): where a prebuilt ARM binary goes;
3. ``solc`` on ``PATH``, if it is the pinned version;
4. the npm ``solc`` (solcjs) pinned in ``package.json``, through ``tools/solc-npm``, an
   adapter that speaks the native ``--version`` / ``--standard-json`` interface.

Nothing is ever downloaded. Compiling needs the ``dev`` extra (py-solc-x and brownie's
artifact formatter); running the daemons needs neither, because the artifacts are
committed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .artifacts import PACKAGE_ARTIFACT_DIR
from .errors import CompilerError
from .files import atomic_write_text

SOLC_VERSION = "0.8.24"
EVM_VERSION = "shanghai"  # ganache 7.9.2 stops at shanghai
OPTIMIZER_RUNS = 200  # measured: the core is 17.3 KB at 200 runs, 19.3 KB at 1,000 (budget 18 KB)
VIA_IR = True  # the Yul pipeline: cheaper bidding and no stack-too-deep contortions
#: The deployable contracts, with committed artifacts. The lens and the facet are created by
#: the core's constructor; their artifacts give the tooling their ABIs.
CONTRACTS = ("DemandReduction", "DemandReductionLens", "DemandReductionFacet")
#: Test-only contracts the package ships for development chains (``dr fund --test-usd``);
#: they get the light artifact too, but are not part of the market and have no size budget.
DEV_CONTRACTS = ("TestUSD",)
#: The core runs the facet's functions on its own storage (delegatecall from its fallback):
#: the two must have the same storage layout, which ``compile_project`` checks.
CORE, FACET = "DemandReduction", "DemandReductionFacet"
#: Imports from npm packages (``node_modules``), e.g. OpenZeppelin's SafeERC20. brownie-config.yaml
#: carries the same remapping.
REMAPPINGS = ("@openzeppelin/=node_modules/@openzeppelin/",)
#: EIP-170 allows 24,576 bytes of deployed code; each contract keeps 6 KB of that free.
MAX_DEPLOYED_BYTES = 18_432

PROJECT_ROOT = Path(__file__).resolve().parent.parent
NPM_ADAPTER = PROJECT_ROOT / "tools" / "solc-npm"


@dataclass(frozen=True)
class ResolvedSolc:
    """A compiler executable and where it was found."""

    path: Path
    origin: str  # "SOLC_BINARY", "py-solc-x folder", "PATH" or "npm solcjs"
    version: str


def solcx_install_folder() -> Path:
    """py-solc-x's binary folder, honouring ``SOLCX_BINARY_PATH``, without importing it."""
    env = os.environ.get("SOLCX_BINARY_PATH")
    return Path(env).expanduser() if env else Path.home() / ".solcx"


def _binary_version(path: Path) -> str | None:
    try:
        out = subprocess.run(
            [str(path), "--version"], capture_output=True, text=True, timeout=60, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"Version:\s*(\d+\.\d+\.\d+)", out)
    return match.group(1) if match else None


def resolve_solc(version: str = SOLC_VERSION) -> ResolvedSolc:
    """Find a solc for ``version`` in the documented order, or raise ``CompilerError``."""
    searched: list[str] = []

    explicit = os.environ.get("SOLC_BINARY")
    if explicit:
        path = Path(explicit).expanduser()
        searched.append(f"SOLC_BINARY={path}")
        if path.is_file() and os.access(path, os.X_OK):
            found = _binary_version(path)
            if found == version:
                return ResolvedSolc(path, "SOLC_BINARY", found)
            raise CompilerError(
                f"SOLC_BINARY={path} reports version {found or 'unknown'}, need {version}; "
                "point it at a solc " + version + " binary or unset it"
            )
        raise CompilerError(f"SOLC_BINARY={path} is not an executable file; fix the path or unset it")

    folder_binary = solcx_install_folder() / f"solc-v{version}"
    searched.append(str(folder_binary))
    if folder_binary.is_file() and os.access(folder_binary, os.X_OK):
        return ResolvedSolc(folder_binary, "py-solc-x folder", version)

    on_path = shutil.which("solc")
    searched.append("solc on PATH" + (f" ({on_path})" if on_path else ""))
    if on_path and _binary_version(Path(on_path)) == version:
        return ResolvedSolc(Path(on_path), "PATH", version)

    searched.append(f"{NPM_ADAPTER} (npm solc)")
    if NPM_ADAPTER.is_file() and shutil.which("node") and _binary_version(NPM_ADAPTER) == version:
        return ResolvedSolc(NPM_ADAPTER, "npm solcjs", version)

    raise CompilerError(
        f"no solc {version} found; searched: " + "; ".join(searched) + ". Fix: run `npm ci` in "
        f"the project (installs solcjs), or place a solc {version} binary at {folder_binary} "
        "or name it with SOLC_BINARY"
    )


def _input_json(sources: dict[str, str]) -> dict[str, Any]:
    from brownie.project.compiler import generate_input_json

    input_json = generate_input_json(
        sources,
        optimizer={"enabled": True, "runs": OPTIMIZER_RUNS},
        evm_version=EVM_VERSION,
        viaIR=VIA_IR,
        remappings=list(REMAPPINGS),
    )
    for selection in input_json["settings"]["outputSelection"].values():
        selection.setdefault("*", []).append("storageLayout")
    return input_json


def _layout(output: dict[str, Any], name: str) -> list[tuple[str, str, int, str]]:
    """(label, slot, offset, type) of every storage variable of contract ``name``."""
    for contracts in output["contracts"].values():
        if name in contracts:
            return [(v["label"], v["slot"], v["offset"], v["type"])
                    for v in contracts[name]["storageLayout"]["storage"]]
    raise CompilerError(f"solc produced no contract {name}")


def check_facet_layout(output: dict[str, Any]) -> None:
    """Raise ``CompilerError`` unless the facet's storage layout is the core's, variable for
    variable: the core runs the facet's code on its own storage."""
    core, facet = _layout(output, CORE), _layout(output, FACET)
    if core != facet:
        diff = next((f"{a} != {b}" for a, b in zip(core, facet) if a != b), f"{len(core)} vs {len(facet)} variables")
        raise CompilerError(f"{FACET}'s storage layout differs from {CORE}'s ({diff}); "
                            f"both must inherit the same storage (MarketState) and declare none of their own")


def core_abi(build: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The core's ABI with the facet's functions, events and errors it does not have: what a
    caller sees at the core's address (its fallback runs the facet's code)."""
    own = build[CORE]["abi"]
    names = {(i.get("type"), i.get("name")) for i in own}
    return own + [i for i in build[FACET]["abi"]
                  if i.get("type") in ("function", "event", "error") and (i["type"], i["name"]) not in names]


def compile_project(
    root: Path = PROJECT_ROOT, build_dir: Path | None = None, package_dir: Path | None = None
) -> dict[str, Path]:
    """Compile ``root/contracts`` and write brownie artifacts plus the package's ABI copies.

    Every contract, interface and library in ``contracts/`` gets its brownie artifact; the
    package gets light copies of the deployable ``CONTRACTS``. Returns the brownie artifact
    paths of those, by contract name.
    """
    import solcx
    from brownie.project.compiler import generate_build_json

    solc = resolve_solc()
    sources = {
        path.relative_to(root).as_posix(): path.read_text()
        for path in sorted((root / "contracts").rglob("*.sol"))
    }
    if not sources:
        raise CompilerError(f"no .sol files in {root / 'contracts'}")
    input_json = _input_json(sources)
    try:
        output = solcx.compile_standard(
            input_json, solc_binary=str(solc.path), allow_paths=str(root), base_path=str(root)
        )
    except solcx.exceptions.SolcError as exc:
        raise CompilerError(f"solc rejected the sources: {exc}") from exc
    check_facet_layout(output)
    # brownie's formatter asks py-solc-x for the "active" solc; make it the resolved one.
    solcx.install._default_solc_binary = solc.path
    build = generate_build_json(
        input_json,
        output,
        {"version": SOLC_VERSION, "evm_version": EVM_VERSION, "optimizer": input_json["settings"]["optimizer"]},
    )
    build_dir = build_dir or root / "build" / "contracts"
    package_dir = package_dir or PACKAGE_ARTIFACT_DIR
    build_dir.mkdir(parents=True, exist_ok=True)
    package_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    # Every unit brownie compiles (interfaces, libraries and abstract bases too) gets its
    # artifact, or `brownie run` would see sources without artifacts and compile again.
    # npm imports (OpenZeppelin) are not the project's: brownie treats them as dependencies.
    for name in sorted(n for n in build if build[n]["sourcePath"].startswith("contracts/")):
        path = build_dir / f"{name}.json"
        atomic_write_text(path, json.dumps(build[name], indent=2, sort_keys=True) + "\n")
        if name in CONTRACTS:
            written[name] = path
    for name in CONTRACTS + DEV_CONTRACTS:
        data = build[name]
        light = {
            "contractName": name,
            "abi": core_abi(build) if name == CORE else data["abi"],
            "bytecode": data["bytecode"],
            "deployedBytecodeSha256": hashlib.sha256(bytes.fromhex(data["deployedBytecode"])).hexdigest(),
            "compiler": {
                "solc": SOLC_VERSION, "evmVersion": EVM_VERSION, "optimizerRuns": OPTIMIZER_RUNS, "viaIR": VIA_IR
            },
            "sourceSha1": data["sha1"],
        }
        atomic_write_text(package_dir / f"{name}.json", json.dumps(light, indent=2, sort_keys=True) + "\n")
    return written


def compile_file(path: Path) -> dict[str, dict[str, Any]]:
    """Compile one standalone .sol file with the project's settings; {name: {abi, bytecode}}.

    For test fixtures and tools that need no brownie artifact.
    """
    import solcx

    solc = resolve_solc()
    source = {path.name: {"content": path.read_text()}}
    input_json = {
        "language": "Solidity",
        "sources": source,
        "settings": {
            "optimizer": {"enabled": True, "runs": OPTIMIZER_RUNS},
            "evmVersion": EVM_VERSION,
            "viaIR": VIA_IR,
            "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object"]}},
        },
    }
    try:
        output = solcx.compile_standard(input_json, solc_binary=str(solc.path))
    except solcx.exceptions.SolcError as exc:
        raise CompilerError(f"solc rejected {path}: {exc}") from exc
    return {
        name: {"abi": data["abi"], "bytecode": data["evm"]["bytecode"]["object"]}
        for name, data in output["contracts"][path.name].items()
    }


def install_solcx_shim(folder: Path | None = None) -> Path:
    """Link the npm adapter as ``solc-v<SOLC_VERSION>`` into py-solc-x's folder.

    This is what lets ``brownie compile`` use solcjs without downloading anything.
    An existing binary there (a native or prebuilt one) is left alone.
    """
    folder = folder or solcx_install_folder()
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"solc-v{SOLC_VERSION}"
    if not target.exists():
        target.symlink_to(NPM_ADAPTER)
    return target
