"""Named network profiles: the chains a utility would actually run a market on.

Each profile says where to connect (a free public RPC URL where one is well known), which
chain id the node must report (checked on every connection), whether blocks need web3's
proof-of-authority ``extraData`` handling, how a transaction's fee is made up (plain L1
gas, OP Stack's L2 gas + L1 data fee, Arbitrum's L2 gas that includes its L1 share), the
block explorer and the native currency that pays for gas.

Sources for every chain id, URL and fee model are in docs/economics.md ("Network
profiles"). This module is the future home of ``demand_response.config.NETWORKS``: its
first four ``Network`` fields are the same (``name``, ``url``, ``chain_id``,
``description``), and the local and Infura profiles are the same entries.
Nothing here touches the network at import time.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Mapping

from .units import ETH, Currency, currency
from .errors import ConfigError

LOCAL_RPC_URL = "http://127.0.0.1:8545"
#: Chain ids of local development chains (ganache, anvil/hardhat).
DEV_CHAIN_IDS = frozenset({1337, 31337})
_INFURA_KEY = "{WEB3_INFURA_PROJECT_ID}"


class NetworkError(ConfigError):
    """A network choice a user can fix (unknown name, wrong chain id); ``str()`` is one line."""


class FeeModel(str, Enum):
    """How a transaction's fee is made up on a chain."""

    L1 = "l1"  # gas used × effective gas price (Ethereum, Energy Web, local chains)
    OP_STACK = "op-stack"  # L2 gas × price + an L1 data fee (GasPriceOracle, receipt field l1Fee)
    ARBITRUM = "arbitrum"  # L2 gas × price, where gas used already includes the L1 share (ArbGasInfo)


@dataclass(frozen=True)
class Network:
    """A named network profile."""

    name: str
    url: str
    chain_id: int | None = None  # None: any chain (the local ``dev`` profile)
    description: str = ""
    poa: bool = False  # proof-of-authority chain: inject web3's extraData middleware
    fee_model: FeeModel = FeeModel.L1
    explorer: str = ""  # base URL of a block explorer ('' for local chains)
    native: Currency = ETH  # pays for gas
    testnet: bool = False

    @property
    def local(self) -> bool:
        """True for a chain on this machine (any chain id allowed, unlocked accounts)."""
        return self.url == LOCAL_RPC_URL

    @property
    def has_l1_data_fee(self) -> bool:
        """True when a transaction pays for its data on Ethereum on top of L2 execution."""
        return self.fee_model is not FeeModel.L1

    def tx_url(self, tx_hash: str) -> str:
        """The explorer page of a transaction ('' without an explorer)."""
        return f"{self.explorer.rstrip('/')}/tx/{tx_hash}" if self.explorer else ""

    def address_url(self, address: str) -> str:
        """The explorer page of an address ('' without an explorer)."""
        return f"{self.explorer.rstrip('/')}/address/{address}" if self.explorer else ""


def _profiles() -> dict[str, Network]:
    ewt, vt = currency("EWT"), currency("VT")
    op, arb = FeeModel.OP_STACK, FeeModel.ARBITRUM
    rows = [
        # local and Infura profiles: the same entries as demand_response.config.NETWORKS today
        Network("dev", LOCAL_RPC_URL, None, "local development chain (dr node / make demo)"),
        Network("ganache", LOCAL_RPC_URL, 1337, "ganache on localhost:8545"),
        Network("anvil", LOCAL_RPC_URL, 31337, "anvil on localhost:8545"),
        Network("sepolia", f"https://sepolia.infura.io/v3/{_INFURA_KEY}", 11155111, "Sepolia via Infura",
                explorer="https://sepolia.etherscan.io", testnet=True),
        Network("mainnet", f"https://mainnet.infura.io/v3/{_INFURA_KEY}", 1, "Ethereum mainnet via Infura",
                explorer="https://etherscan.io"),
        # Energy Web: Aura proof-of-authority, gas paid in EWT (VT on the testnet)
        Network("ewc", "https://rpc.energyweb.org", 246, "Energy Web Chain (Aura PoA)", poa=True,
                explorer="https://explorer.energyweb.org", native=ewt),
        Network("volta", "https://volta-rpc.energyweb.org", 73799, "Energy Web Volta testnet (Aura PoA)",
                poa=True, explorer="https://volta-explorer.energyweb.org", native=vt, testnet=True),
        # OP Stack: L2 gas + L1 data fee from the GasPriceOracle predeploy
        Network("base", "https://mainnet.base.org", 8453, "Base (OP Stack)", fee_model=op,
                explorer="https://basescan.org"),
        Network("base-sepolia", "https://sepolia.base.org", 84532, "Base Sepolia testnet (OP Stack)",
                fee_model=op, explorer="https://sepolia.basescan.org", testnet=True),
        Network("optimism", "https://mainnet.optimism.io", 10, "OP Mainnet (OP Stack)", fee_model=op,
                explorer="https://optimistic.etherscan.io"),
        Network("optimism-sepolia", "https://sepolia.optimism.io", 11155420, "OP Sepolia testnet (OP Stack)",
                fee_model=op, explorer="https://optimism-sepolia.blockscout.com", testnet=True),
        # Arbitrum: L2 gas whose amount includes the L1 share (ArbGasInfo precompile)
        Network("arbitrum", "https://arb1.arbitrum.io/rpc", 42161, "Arbitrum One", fee_model=arb,
                explorer="https://arbiscan.io"),
        Network("arbitrum-sepolia", "https://sepolia-rollup.arbitrum.io/rpc", 421614,
                "Arbitrum Sepolia testnet", fee_model=arb, explorer="https://sepolia.arbiscan.io", testnet=True),
    ]
    return {n.name: n for n in rows}


NETWORKS: dict[str, Network] = _profiles()


def network(name: str) -> Network:
    """The profile called ``name``, or a NetworkError that lists the known ones."""
    found = NETWORKS.get((name or "").strip().lower())
    if found is None:
        raise NetworkError(f"unknown network {name!r}; use one of {', '.join(sorted(NETWORKS))}, "
                           "or set RPC_URL (and CHAIN_ID) for any other endpoint")
    return found


def by_chain_id(chain_id: int) -> Network | None:
    """The public profile with this chain id (local ones excluded), if any."""
    for profile in NETWORKS.values():
        if profile.chain_id == chain_id and not profile.local:
            return profile
    return None


def network_url(profile: Network, values: Mapping[str, str]) -> str:
    """The RPC URL of ``profile``, with ``WEB3_INFURA_PROJECT_ID`` filled in where it needs one."""
    if _INFURA_KEY not in profile.url:
        return profile.url
    project = values.get("WEB3_INFURA_PROJECT_ID")
    if not project:
        raise NetworkError(f"network {profile.name} needs WEB3_INFURA_PROJECT_ID in .env (or set RPC_URL)")
    return profile.url.replace(_INFURA_KEY, project)


def needs_poa_middleware(profile: Network | None, extra_data: str | bytes | None) -> bool:
    """Whether web3 needs ``ExtraDataToPOAMiddleware`` on this connection.

    True for a PoA profile, and for any chain whose latest block's ``extraData`` is longer
    than 32 bytes (clique/IBFT put their seal there; web3's block formatter rejects it). This
    is the same probe as ``demand_response.chain._is_poa``, with the profile's flag on top:
    Energy Web's Aura keeps its seal in separate header fields (``step``, ``signature``) and
    its ``extraData`` within 32 bytes, so the probe alone would say no; the middleware is
    harmless there and covers a validator that writes a longer ``extraData``.
    """
    if profile is not None and profile.poa:
        return True
    if extra_data is None:
        return False
    size = len(extra_data) if isinstance(extra_data, bytes) else len(str(extra_data).removeprefix("0x")) // 2
    return size > 32
