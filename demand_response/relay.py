"""Signed bids (EIP-712) that a relayer places with ``submitSignedBids``: the household sends
no transaction.

A household signs its bids for one request off chain (``sign_bids``); the signature binds
the request, the bidder, the watts and prices, the market's address and the chain id. Anyone
holding the entry (the utility daemon, an aggregator) may place it, many households in one
transaction, and pays the gas; nobody can change the bids. A relayer checks an entry with
``recover_bidder`` before sending it, since the contract reverts the whole batch on a bad
signature. The typed data is the contract's (docs/contract.md, "Relayed bids"):

    EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)
        name "DemandReduction", version "1"
    SignedBids(uint256 requestId,address bidder,uint256[] watts,uint256[] pricesPerKWh)
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount
from eth_keys.exceptions import BadSignature as _BadSignature
from eth_utils.exceptions import ValidationError
from web3 import Web3

from .errors import UserError
from .market import MAX_BID_WATTS, MAX_BIDS_PER_CALL, TICKS, tick_wei

DOMAIN_NAME = "DemandReduction"
DOMAIN_VERSION = "1"
#: The typed struct, as the contract hashes it.
SIGNED_BIDS_TYPES = {
    "SignedBids": [
        {"name": "requestId", "type": "uint256"},
        {"name": "bidder", "type": "address"},
        {"name": "watts", "type": "uint256[]"},
        {"name": "pricesPerKWh", "type": "uint256[]"},
    ],
}
#: secp256k1's curve order: a signature with s above half of it is malleable and refused.
_SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


class SignedBidsError(UserError):
    """A signed entry that the contract would refuse (malformed, or signed by someone else)."""


def typed_data(contract_address: str, chain_id: int, request_id: int, bidder: str,
               watts: Sequence[int], prices: Sequence[int]) -> dict[str, Any]:
    """The full EIP-712 message of a household's bids, as wallets (``eth_signTypedData_v4``) take it."""
    return {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
            **SIGNED_BIDS_TYPES,
        },
        "primaryType": "SignedBids",
        "domain": {
            "name": DOMAIN_NAME,
            "version": DOMAIN_VERSION,
            "chainId": int(chain_id),
            "verifyingContract": Web3.to_checksum_address(contract_address),
        },
        "message": {
            "requestId": int(request_id),
            "bidder": Web3.to_checksum_address(bidder),
            "watts": [int(w) for w in watts],
            "pricesPerKWh": [int(p) for p in prices],
        },
    }


def sign_bids(private_key_or_account: str | bytes | LocalAccount, contract_address: str, chain_id: int,
              request_id: int, bidder: str | None, watts: Sequence[int], prices: Sequence[int]) -> dict[str, Any]:
    """Sign a household's bids for ``request_id``; returns the JSON-able entry
    ``{"bidder", "watts", "pricesPerKWh", "signature"}`` (signature as 0x-hex, 65 bytes).

    ``bidder`` defaults to the key's address; another address is refused, since the contract
    would reject the signature."""
    account = (private_key_or_account if isinstance(private_key_or_account, LocalAccount)
               else Account.from_key(private_key_or_account))
    bidder = Web3.to_checksum_address(bidder or account.address)
    if bidder != account.address:
        raise SignedBidsError(f"the key belongs to {account.address}, not to the bidder {bidder}; "
                              "sign with the bidder's own key")
    if len(watts) != len(prices) or not watts:
        raise SignedBidsError(f"{len(watts)} watts and {len(prices)} prices: give one price per bid, "
                              "at least one bid")
    message = encode_typed_data(full_message=typed_data(contract_address, chain_id, request_id, bidder,
                                                        watts, prices))
    signed = account.sign_message(message)
    return {
        "bidder": bidder,
        "watts": [int(w) for w in watts],
        "pricesPerKWh": [int(p) for p in prices],
        "signature": "0x" + bytes(signed.signature).hex(),
    }


def _signature_bytes(entry: Mapping[str, Any]) -> bytes:
    raw = entry.get("signature")
    try:
        signature = bytes.fromhex(raw.removeprefix("0x")) if isinstance(raw, str) else bytes(raw)
    except (TypeError, ValueError) as exc:
        raise SignedBidsError(f"the signature of {entry.get('bidder')} is not hex; re-sign the bids") from exc
    if len(signature) != 65:
        raise SignedBidsError(f"the signature of {entry.get('bidder')} has {len(signature)} bytes, "
                              "not 65; re-sign the bids")
    if signature[64] not in (27, 28):
        # eth_account also recovers from v = 0/1 and EIP-155 style v; the contract's
        # ecrecover does not, and would revert the whole batch (F-14).
        raise SignedBidsError(f"the signature of {entry.get('bidder')} has v = {signature[64]}, not 27 or 28 as "
                              "the contract requires; re-sign the bids (or add 27 to a v of 0 or 1)")
    if int.from_bytes(signature[32:64], "big") > _SECP256K1_N // 2:
        raise SignedBidsError(f"the signature of {entry.get('bidder')} is malleable (high s), which the "
                              "contract refuses; re-sign the bids")
    return signature


def recover_bidder(entry: Mapping[str, Any], contract_address: str, chain_id: int, request_id: int) -> str:
    """The address that signed ``entry`` for ``request_id`` on this market and chain, checked
    as the contract checks it (65 bytes, low s). Compare it with ``entry["bidder"]``, or use
    ``check_entry``; raises ``SignedBidsError`` for a malformed entry."""
    signature = _signature_bytes(entry)
    try:
        message = encode_typed_data(full_message=typed_data(
            contract_address, chain_id, request_id, entry["bidder"], entry["watts"], entry["pricesPerKWh"]))
        return Account.recover_message(message, signature=signature)
    except (KeyError, TypeError, ValueError, ValidationError, _BadSignature) as exc:
        raise SignedBidsError(f"the signed entry of {entry.get('bidder')} is malformed ({exc}); "
                              "re-sign the bids") from exc


def check_entry(entry: Mapping[str, Any], contract_address: str, chain_id: int, request_id: int,
                cap_wei_per_kwh: int | None = None) -> None:
    """Raise ``SignedBidsError`` unless ``entry`` is signed by its own bidder for ``request_id``
    on this market and chain, and its bids are ones ``submitBids`` takes: what a relayer checks
    before sending, since such an entry reverts the whole batch (``BadSignature``, ``ZeroWatts``,
    ...). A household may sign any typed data, not only what ``sign_bids`` accepts (F-15).
    Give the request's cap (``max_price``) to check the prices against its tick grid too."""
    _check_bids(entry, cap_wei_per_kwh)
    signer = recover_bidder(entry, contract_address, chain_id, request_id)
    if signer != Web3.to_checksum_address(entry["bidder"]):
        raise SignedBidsError(f"the entry for {entry['bidder']} is signed by {signer}: another request, "
                              "market, chain or bids than it claims; drop it")


def _check_bids(entry: Mapping[str, Any], cap_wei_per_kwh: int | None) -> None:
    """The contract's rules for one submission's bids (``MarketState._record`` and ``_place``)."""
    who = entry.get("bidder")
    watts, prices = entry.get("watts"), entry.get("pricesPerKWh")
    if not isinstance(watts, (list, tuple)) or not isinstance(prices, (list, tuple)):
        raise SignedBidsError(f"the entry of {who} has no watts or price list; drop it")
    if len(watts) != len(prices) or not 0 < len(watts) <= MAX_BIDS_PER_CALL:
        raise SignedBidsError(f"the entry of {who} has {len(watts)} watts and {len(prices)} prices; the contract "
                              f"takes 1 to {MAX_BIDS_PER_CALL} bids with one price each: drop it")
    step = tick_wei(cap_wei_per_kwh) if cap_wei_per_kwh else 0
    for i, (w, p) in enumerate(zip(watts, prices)):
        try:
            w, p = int(w), int(p)  # as ``typed_data`` signs and ``entry_tuple`` sends them
        except (TypeError, ValueError) as exc:
            raise SignedBidsError(f"bid {i} of {who} is not a number ({w!r} W at {p!r}); drop the entry") from exc
        if not 0 < w <= MAX_BID_WATTS or p <= 0:
            raise SignedBidsError(f"bid {i} of {who} ({w} W at {p} per kWh) is outside 1..{MAX_BID_WATTS} W "
                                  "or has no price; drop the entry")
        if step and (p % step or p // step > TICKS):
            raise SignedBidsError(f"bid {i} of {who} has price {p} per kWh, not a multiple of the tick {step} "
                                  f"up to the cap {step * TICKS}; drop the entry")


def entry_tuple(entry: Mapping[str, Any]) -> tuple[str, list[int], list[int], bytes]:
    """The contract's ``SignedBids`` struct for a JSON entry."""
    return (Web3.to_checksum_address(entry["bidder"]), [int(w) for w in entry["watts"]],
            [int(p) for p in entry["pricesPerKWh"]], _signature_bytes_raw(entry))


def _signature_bytes_raw(entry: Mapping[str, Any]) -> bytes:
    """The signature as given (no checks): a relayer may knowingly send a bad one in tests."""
    raw = entry["signature"]
    return bytes.fromhex(raw.removeprefix("0x")) if isinstance(raw, str) else bytes(raw)
