"""Bug 7 of issue 14 against a real node: ``--network sepolia`` with ``RPC_URL`` pointing at a
local chain was silently accepted; now the connection is refused in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from demand_response import devchain
from demand_response.config import load_settings
from demand_response.errors import WrongChain
from demand_response.session import connect_checked


def test_a_named_network_refuses_an_rpc_url_on_another_chain(chain: devchain.DevChain, tmp_path: Path) -> None:
    settings = load_settings(tmp_path / ".env", environ={"RPC_URL": chain.url}, network="sepolia")
    with pytest.raises(WrongChain, match=f"expects chain id 11155111 but .* reports {chain.chain_id}"):
        connect_checked(settings)


def test_the_network_that_matches_the_endpoint_connects(chain: devchain.DevChain, tmp_path: Path) -> None:
    kind = "ganache" if chain.chain_id == 1337 else "anvil"
    _, chain_id = connect_checked(load_settings(tmp_path / ".env", environ={"RPC_URL": chain.url}, network=kind))
    assert chain_id == chain.chain_id
