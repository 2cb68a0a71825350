"""Opening a configured chain and contract, with the chain id and deployment checks every
daemon and command shares (CLI, brownie scripts, Flask)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from web3 import Web3

from .chain import connect
from .config import NETWORKS, Settings, check_chain_id, read_deployments
from .contract import DemandReduction
from .errors import ContractNotFound, WrongChain

log = logging.getLogger(__name__)

#: How far back a listener with no cursor and no recorded deployment starts.
DEFAULT_LOOKBACK = 10_000


@dataclass
class Session:
    """A connected chain and the checked contract on it."""

    settings: Settings
    w3: Web3
    chain_id: int
    dr: DemandReduction
    deployment: dict[str, Any] | None

    def start_block(self) -> int:
        """Where a listener without a cursor starts: START_BLOCK, the deployment block or a lookback."""
        if self.settings.start_block is not None:
            return self.settings.start_block
        if self.deployment and "block" in self.deployment:
            return int(self.deployment["block"])
        return max(0, self.w3.eth.block_number - DEFAULT_LOOKBACK)


def connect_checked(settings: Settings) -> tuple[Web3, int]:
    """Connect to ``settings.rpc_url`` and check its chain id against the network's."""
    profile = NETWORKS.get(settings.network)
    w3 = connect(settings.rpc_url, poa=bool(profile and profile.poa), push=settings.get("WS_URL"))
    chain_id = int(w3.eth.chain_id)
    check_chain_id(settings, chain_id)
    return w3, chain_id


def _deployments_of(settings: Settings, address: str) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for network, by_chain in read_deployments(settings.deployments_file).items():
        for entry in by_chain.values() if isinstance(by_chain, dict) else []:
            if str(entry.get("address", "")).lower() == address.lower():
                found.append((network, entry))
    return found


def resolve_address(settings: Settings, chain_id: int) -> tuple[str, dict[str, Any] | None]:
    """The contract address to use and its deployment record; checks the recorded chain id."""
    if settings.contract_address:
        address = settings.contract_address
        records = _deployments_of(settings, address)
        matching = [e for _, e in records if int(e.get("chain_id", -1)) == chain_id]
        if records and not matching:
            network, entry = records[0]
            raise WrongChain(
                f"wrong chain: contract {address} was deployed on chain {entry.get('chain_id')} "
                f"(network {network}) but the endpoint reports chain {chain_id}; fix RPC_URL / --network "
                "or CONTRACT_ADDRESS"
            )
        return address, (matching[0] if matching else None)
    by_chain = read_deployments(settings.deployments_file).get(settings.network, {})
    entry = by_chain.get(str(chain_id))
    if entry:
        return entry["address"], entry
    if by_chain:
        recorded = ", ".join(f"chain {c}" for c in sorted(by_chain))
        raise WrongChain(
            f"wrong chain: network {settings.network!r} has deployments on {recorded} but the endpoint "
            f"reports chain {chain_id}; fix RPC_URL / --network, or deploy here with `dr deploy`"
        )
    raise ContractNotFound(
        f"no contract address for network {settings.network!r} (chain {chain_id}); deploy with "
        "`dr deploy` or set CONTRACT_ADDRESS in .env / --contract"
    )


def open_session(settings: Settings) -> Session:
    """Connect, check the chain id, find and check the contract (a one-line ``ChainError`` on failure)."""
    w3, chain_id = connect_checked(settings)
    address, deployment = resolve_address(settings, chain_id)
    dr = DemandReduction.at(w3, address)
    return Session(settings, w3, chain_id, dr, deployment)
