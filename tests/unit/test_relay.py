"""Signed bids (``demand_response.relay``) without a chain: the EIP-712 digest is the one the
contract computes (checked here against the formula, and on chain in
tests/contract/test_relayed_bids.py), and the relay-side checks refuse what the contract would."""

from __future__ import annotations

import pytest
from eth_abi import encode
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_keys import keys
from eth_utils import keccak

from demand_response import relay

MARKET = "0x" + "11" * 20
TICK = 10**12


def _home(seed: str = "unit") -> Account:
    return Account.from_key(keccak(text=seed))


def _digest(request_id: int, bidder: str, watts: list[int], prices: list[int], chain_id: int = 1) -> bytes:
    """The contract's digest, written out from EIP-712 (arrays: keccak of the packed elements)."""
    domain = keccak(encode(["bytes32", "bytes32", "bytes32", "uint256", "address"], [
        keccak(text="EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"),
        keccak(text="DemandReduction"), keccak(text="1"), chain_id, MARKET]))
    packed = lambda xs: keccak(b"".join(x.to_bytes(32, "big") for x in xs))  # noqa: E731
    struct = keccak(encode(["bytes32", "uint256", "address", "bytes32", "bytes32"], [
        keccak(text="SignedBids(uint256 requestId,address bidder,uint256[] watts,uint256[] pricesPerKWh)"),
        request_id, bidder, packed(watts), packed(prices)]))
    return keccak(b"\x19\x01" + domain + struct)


def test_the_signed_digest_is_the_eip_712_formula_the_contract_uses() -> None:
    home = _home()
    message = encode_typed_data(full_message=relay.typed_data(MARKET, 1, 7, home.address, [1000, 20], [TICK, 3 * TICK]))
    assert keccak(b"\x19" + message.version + message.header + message.body) == _digest(
        7, home.address, [1000, 20], [TICK, 3 * TICK])


def test_a_signed_entry_names_its_bidder_and_is_json_ready() -> None:
    home = _home()
    entry = relay.sign_bids(home.key, MARKET, 1, 7, home.address, [1000], [TICK])
    assert entry == {"bidder": home.address, "watts": [1000], "pricesPerKWh": [TICK],
                     "signature": entry["signature"]}
    assert len(bytes.fromhex(entry["signature"][2:])) == 65
    assert relay.recover_bidder(entry, MARKET, 1, 7) == home.address
    relay.check_entry(entry, MARKET, 1, 7)
    for other in ({"chain_id": 2, "request_id": 7}, {"chain_id": 1, "request_id": 8}):
        with pytest.raises(relay.SignedBidsError, match="drop it"):
            relay.check_entry(entry, MARKET, other["chain_id"], other["request_id"])


def test_the_signing_helper_refuses_a_key_that_is_not_the_bidders_and_uneven_bids() -> None:
    home, other = _home("a"), _home("b")
    with pytest.raises(relay.SignedBidsError, match="sign with the bidder's own key"):
        relay.sign_bids(home, MARKET, 1, 1, other.address, [1], [TICK])
    with pytest.raises(relay.SignedBidsError, match="one price per bid"):
        relay.sign_bids(home, MARKET, 1, 1, None, [1, 2], [TICK])
    with pytest.raises(relay.SignedBidsError, match="one price per bid"):
        relay.sign_bids(home, MARKET, 1, 1, None, [], [])


def test_a_high_s_signature_recovers_the_same_key_but_is_refused() -> None:
    """The malleable twin of a valid signature names the same signer to a bare ecrecover; the
    contract (OpenZeppelin's ECDSA) and ``recover_bidder`` refuse it."""
    home = _home("malleable")
    entry = relay.sign_bids(home, MARKET, 1, 7, None, [1000], [TICK])
    sig = bytes.fromhex(entry["signature"][2:])
    s = int.from_bytes(sig[32:64], "big")
    assert s <= relay._SECP256K1_N // 2
    twin = sig[:32] + (relay._SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - sig[64]])
    recovered = keys.Signature(vrs=(twin[64] - 27, int.from_bytes(twin[:32], "big"), relay._SECP256K1_N - s))
    assert recovered.recover_public_key_from_msg_hash(
        _digest(7, home.address, [1000], [TICK])).to_checksum_address() == home.address
    with pytest.raises(relay.SignedBidsError, match="malleable"):
        relay.recover_bidder({**entry, "signature": "0x" + twin.hex()}, MARKET, 1, 7)


@pytest.mark.parametrize("signature", ["0x1234", "not hex", "0x" + "00" * 65, b"\x01" * 64])
def test_a_malformed_signature_is_one_clear_error(signature) -> None:
    entry = {**relay.sign_bids(_home(), MARKET, 1, 7, None, [1000], [TICK]), "signature": signature}
    with pytest.raises(relay.SignedBidsError, match="re-sign the bids"):
        relay.check_entry(entry, MARKET, 1, 7)


def test_the_relay_check_takes_numbers_as_the_wrapper_sends_them_and_refuses_what_the_contract_would() -> None:
    """F-14, F-15: v 27/28 only, and the bids' own rules (on chain: tests/contract/test_relay_hostile.py)."""
    home = _home("f15")
    entry = relay.sign_bids(home, MARKET, 1, 7, None, [1000, 20], [TICK, 3 * TICK])
    as_strings = {**entry, "watts": ["1000", "20"], "pricesPerKWh": [str(TICK), str(3 * TICK)]}
    relay.check_entry(as_strings, MARKET, 1, 7, 128 * TICK)  # JSON with quoted numbers signs the same
    raw = bytes.fromhex(entry["signature"][2:])
    with pytest.raises(relay.SignedBidsError, match="v = [01],"):
        relay.check_entry({**entry, "signature": "0x" + (raw[:64] + bytes([raw[64] - 27])).hex()}, MARKET, 1, 7)
    for watts, prices, match in (([1000], ["x"], "not a number"), ([1000, 20], [TICK], "1 to 64 bids"),
                                 ([1000, 0], [TICK, TICK], "outside"), ([1000, 20], [TICK, TICK // 2], "tick")):
        with pytest.raises(relay.SignedBidsError, match=match):
            relay.check_entry({**entry, "watts": watts, "pricesPerKWh": prices}, MARKET, 1, 7, 128 * TICK)
