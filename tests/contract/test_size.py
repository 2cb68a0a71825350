"""Every deployed contract fits its code-size budget, read from the committed artifacts.

EIP-170 allows 24,576 bytes of deployed code; each contract keeps 6 KB of that free
(``compiler.MAX_DEPLOYED_BYTES``) for the features still to come.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from demand_response import compiler
from demand_response.artifacts import load_artifact

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", compiler.CONTRACTS)
def test_every_deployed_contract_fits_the_size_budget(name: str) -> None:
    build = json.loads((ROOT / "build" / "contracts" / f"{name}.json").read_text())
    size = len(bytes.fromhex(build["deployedBytecode"]))
    assert 0 < size <= compiler.MAX_DEPLOYED_BYTES, f"{name} is {size:,} bytes"


@pytest.mark.parametrize("name", compiler.CONTRACTS)
def test_the_light_install_carries_every_deployable_contract(name: str) -> None:
    light = load_artifact(name)
    assert light["contractName"] == name and light["abi"] and light["bytecode"]
