"""The core's facet (contracts/DemandReductionFacet.sol): what the core's fallback may run.

The core runs every call it does not know on the facet's code, on its own storage
(delegatecall). So the facet must add only the request functions and views, with selectors
the core does not have, and have the core's storage layout exactly; `dr compile` refuses a
layout that differs (``compiler.check_facet_layout``). Read from the committed artifacts.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eth_utils import function_signature_to_4byte_selector

from demand_response import compiler
from demand_response.artifacts import load_artifact
from demand_response.errors import CompilerError

ROOT = Path(__file__).resolve().parents[2]
#: The state-changing functions the facet serves: creating, escrowing, cancelling requests and
#: sponsoring their books.
REQUEST_FUNCTIONS = {"requestReduction", "requestReductionWithTerms", "requestReductionInToken", "cancelRequest",
                     "sponsorBook"}


def _abi(name: str) -> list[dict]:
    return json.loads((ROOT / "build" / "contracts" / f"{name}.json").read_text())["abi"]


def _selector(item: dict) -> bytes:
    types = ",".join(_type(i) for i in item["inputs"])
    return function_signature_to_4byte_selector(f"{item['name']}({types})")


def _type(arg: dict) -> str:
    if arg["type"].startswith("tuple"):
        return "(" + ",".join(_type(c) for c in arg["components"]) + ")" + arg["type"][len("tuple"):]
    return arg["type"]


def _functions(name: str) -> dict[bytes, dict]:
    return {_selector(i): i for i in _abi(name) if i["type"] == "function"}


def test_the_facet_adds_only_views_and_the_request_functions() -> None:
    core, facet = _functions("DemandReduction"), _functions("DemandReductionFacet")
    extra = {s: f for s, f in facet.items() if s not in core}
    changing = {f["name"] for f in extra.values() if f["stateMutability"] not in ("view", "pure")}
    assert changing == REQUEST_FUNCTIONS
    names = {f["name"] for f in extra.values()}
    assert {"getRequest", "termsOf", "participantOf", "book", "levelProof", "submissionBids"} <= names
    # No name is served twice with different arguments (one would shadow the other).
    assert not names & {f["name"] for f in core.values()}


def test_the_light_artifact_shows_the_core_and_facet_as_one_contract() -> None:
    light = {i["name"] for i in load_artifact("DemandReduction")["abi"] if i["type"] == "function"}
    facet = {f["name"] for f in _functions("DemandReductionFacet").values()}
    core = {f["name"] for f in _functions("DemandReduction").values()}
    assert light == core | facet


def _output(core: list[dict], facet: list[dict]) -> dict:
    layout = lambda storage: {"storageLayout": {"storage": storage}}  # noqa: E731
    return {"contracts": {"a.sol": {compiler.CORE: layout(core)}, "b.sol": {compiler.FACET: layout(facet)}}}


def test_a_facet_whose_storage_layout_differs_is_refused_at_compile_time() -> None:
    var = {"label": "utility", "slot": "0", "offset": 0, "type": "t_address"}
    compiler.check_facet_layout(_output([var], [dict(var)]))
    moved = dict(var, slot="1")
    with pytest.raises(CompilerError, match="storage layout differs.*utility"):
        compiler.check_facet_layout(_output([var], [moved]))
    with pytest.raises(CompilerError, match="1 vs 2 variables"):
        compiler.check_facet_layout(_output([var], [var, dict(var, label="extra", slot="9")]))
