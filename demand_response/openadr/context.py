"""Names shared by the VTN and the VENs: market contexts and the VEN registration proof.

A market context is the URI OpenADR uses for a demand-response programme. Ours names one
request of one deployed contract on one chain::

    dr://<chainId>/<contract address, checksummed>/<requestId>

``dr://<chainId>/<contract>`` (no request id) is the programme itself: the contract.

A VEN registers under a name that proves which Ethereum address it speaks for::

    <address>:<unix seconds>:<0x EIP-191 signature of registration_message(...)>

The VTN recovers the signer, checks it is the named address, that the time is within
``PROOF_MAX_AGE`` of its clock and that the address is enrolled on the contract.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from eth_account import Account
from eth_account.messages import encode_defunct
from web3 import Web3
from ..errors import UserError

SCHEME = "dr"
#: A registration proof older (or further in the future) than this is refused: it bounds replay.
PROOF_MAX_AGE = 300

_CONTEXT = re.compile(r"^dr://(\d{1,20})/(0x[0-9a-fA-F]{40})(?:/(\d{1,78}))?$")


class OpenAdrError(UserError, ValueError):
    """A malformed market context, VEN name or OpenADR payload (one clear line)."""


@dataclass(frozen=True)
class MarketContext:
    """A parsed market context: the chain, the contract and (optionally) the request."""

    chain_id: int
    contract: str
    request_id: int | None = None

    def __str__(self) -> str:
        base = f"{SCHEME}://{self.chain_id}/{Web3.to_checksum_address(self.contract)}"
        return base if self.request_id is None else f"{base}/{self.request_id}"

    @property
    def programme(self) -> "MarketContext":
        """The context of the whole programme (the contract), without a request."""
        return MarketContext(self.chain_id, self.contract)

    @classmethod
    def parse(cls, text: str) -> "MarketContext":
        """Parse ``dr://<chainId>/<contract>[/<requestId>]``; raises ``OpenAdrError``."""
        match = _CONTEXT.match(text or "")
        if not match:
            raise OpenAdrError(f"market context {text!r} is not dr://<chainId>/<contract>[/<requestId>]")
        request = match.group(3)
        return cls(int(match.group(1)), Web3.to_checksum_address(match.group(2)),
                   None if request is None else int(request))


def registration_message(vtn_id: str, address: str, timestamp: int) -> str:
    """The text a VEN signs to prove it speaks for ``address`` at this VTN."""
    return f"OpenADR VEN registration at VTN {vtn_id} for {Web3.to_checksum_address(address)} at {timestamp}"


def ven_name_for(vtn_id: str, private_key: str, timestamp: int | None = None) -> str:
    """The VEN name that registers the key's address at ``vtn_id`` (signed now by default)."""
    account = Account.from_key(private_key)
    timestamp = int(time.time()) if timestamp is None else timestamp
    signed = account.sign_message(encode_defunct(text=registration_message(vtn_id, account.address, timestamp)))
    return f"{account.address}:{timestamp}:0x{signed.signature.hex().removeprefix('0x')}"


def verify_ven_name(vtn_id: str, ven_name: str, now: float | None = None) -> str:
    """The checksummed address a VEN name proves; raises ``OpenAdrError`` naming the problem."""
    parts = (ven_name or "").split(":")
    if len(parts) != 3 or not Web3.is_address(parts[0]) or not parts[1].isdigit():
        raise OpenAdrError("VEN name is not <address>:<unix seconds>:<signature>; build it with ven_name_for()")
    address, timestamp = Web3.to_checksum_address(parts[0]), int(parts[1])
    now = time.time() if now is None else now
    if abs(now - timestamp) > PROOF_MAX_AGE:
        raise OpenAdrError(f"VEN registration proof is {abs(now - timestamp):.0f} s off the VTN's clock "
                           f"(at most {PROOF_MAX_AGE} s); sign a fresh one")
    try:
        signer = Account.recover_message(
            encode_defunct(text=registration_message(vtn_id, address, timestamp)), signature=parts[2]
        )
    except Exception as exc:  # malformed signature bytes
        raise OpenAdrError(f"VEN registration signature is malformed ({type(exc).__name__})") from exc
    if signer != address:
        raise OpenAdrError(f"VEN registration is signed by {signer}, not by {address}")
    return address
