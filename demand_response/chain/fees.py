"""Fee fields for a transaction: EIP-1559 where the chain has a base fee, a legacy gas
price elsewhere, optionally shared for a moment by every signer on one connection."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from web3 import Web3

#: Fee bump for a replacement; nodes require at least 10 %.
REPLACEMENT_BUMP = 1.125
#: How long fee fields fetched by one signer are reused by all signers on a connection (s).
FEES_TTL = 1.0
_FEES_LOCK = threading.Lock()


@dataclass
class Fees:
    """Fee fields for one transaction."""

    fields: dict[str, int]

    def bumped(self, factor: float = REPLACEMENT_BUMP) -> "Fees":
        """Fees raised by ``factor`` (rounded up), as a replacement needs."""
        return Fees({k: int(v * factor) + 1 for k, v in self.fields.items()})


def fetch_fees(w3: Web3) -> Fees:
    """Ask the node: EIP-1559 fees when the latest block has a base fee, else a gas price.
    The answer is remembered on ``w3`` for ``shared_fees``."""
    latest = w3.eth.get_block("latest")
    base = latest.get("baseFeePerGas")
    if base is None:
        fields = {"gasPrice": int(w3.eth.gas_price)}
    else:
        try:
            tip = int(w3.eth.max_priority_fee)
        except Exception:
            tip = 1_000_000_000
        fields = {"maxFeePerGas": 2 * int(base) + tip, "maxPriorityFeePerGas": tip}
    w3._dr_fees = (time.monotonic(), fields)  # type: ignore[attr-defined]
    return Fees(dict(fields))


def shared_fees(w3: Web3, ttl: float) -> Fees:
    """Fees fetched by any signer on ``w3`` less than ``ttl`` s ago, else fetched now: a fleet
    of 100 agents bidding on one request asks the node once, not 100 times (2 x base fee
    leaves room for the base fee to rise meanwhile)."""
    with _FEES_LOCK:  # one signer asks, the others wait for its answer
        cached = vars(w3).get("_dr_fees")
        if cached is not None and time.monotonic() - cached[0] < ttl:
            return Fees(dict(cached[1]))
        return fetch_fees(w3)


def forget_fees(w3: Web3) -> None:
    """Drop the fees remembered on ``w3`` (after a node restart)."""
    vars(w3).pop("_dr_fees", None)
