"""Fixtures for the OpenADR tier: an anvil chain, a registered-mode contract, a VTN on loopback."""

from __future__ import annotations


import pytest
from web3 import Web3

from demand_response import devchain
from demand_response.chain import Signer, connect
from demand_response.contract import DemandReduction



@pytest.fixture(scope="module")
def anvil(request: pytest.FixtureRequest, start_chain) -> devchain.DevChain:
    """An anvil on a free port for the module."""
    return start_chain(request, "anvil", accounts=6, balance_eth=1_000)


@pytest.fixture(scope="module")
def w3(anvil: devchain.DevChain) -> Web3:
    return connect(anvil.url)


@pytest.fixture(scope="module")
def keys() -> list[str]:
    """Private keys of anvil's accounts: 0 is the utility, 1.. are consumers."""
    return devchain.dev_private_keys(6, "anvil")


@pytest.fixture
def dr(w3: Web3) -> DemandReduction:
    """A fresh registered-mode contract (only enrolled consumers may bid or register a VEN)."""
    return DemandReduction.deploy(Signer(w3, w3.eth.accounts[0]), registration_required=True)


@pytest.fixture
def utility(w3: Web3) -> Signer:
    return Signer(w3, w3.eth.accounts[0])
