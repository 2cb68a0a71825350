"""The L2 fee path on a real anvil and ganache, with the oracles' interfaces at their real addresses.

No OP Stack or Arbitrum node runs here. Instead the test-only contracts in
tests/contracts/L2FeeOracles.sol are placed with ``anvil_setCode`` (ganache:
``evm_setAccountCode``) at the GasPriceOracle
predeploy (0x42…0F) and the ArbGasInfo precompile (0x…6C), and ``demand_response.fees``
reads them exactly as it would read a real chain. What this does not run (docs/economics.md):
a real chain's FastLZ compression in ``getL1Fee``, receipts that carry ``l1Fee``, and
Arbitrum's gas accounting of the L1 share.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
from web3 import Web3

from demand_response import devchain, fees
from demand_response.chain import Signer, connect
from demand_response.compiler import compile_file
from demand_response.fees import FeeError, OpL1Params

GWEI = 10**9
BASE_PARAMS = (GWEI, 1, 2269, 1_055_778)  # l1 base fee, blob base fee, base fee scalar, blob fee scalar
ARB_PRICES = [25_000_000_000, 480_000_000, 0, 20_000_000, 0, 20_000_000]  # getPricesInWei()


#: How each node replaces the code at an address.
SET_CODE = {"anvil": "anvil_setCode", "ganache": "evm_setAccountCode"}


@pytest.fixture(scope="module", params=["anvil", "ganache"])
def node(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[devchain.DevChain]:
    chain = devchain.start(request.param, accounts=3, balance_eth=1000,
                           log_path=tmp_path_factory.mktemp("fees") / f"{request.param}.log")
    chain.set_code = SET_CODE[request.param]  # type: ignore[attr-defined]
    yield chain
    chain.stop()


@pytest.fixture(scope="module")
def oracles() -> dict:
    return compile_file(Path(__file__).parents[1] / "contracts" / "L2FeeOracles.sol")


@pytest.fixture
def w3(node: devchain.DevChain) -> Iterator[Web3]:
    snap = node.rpc("evm_snapshot")
    yield connect(node.url)
    node.rpc("evm_revert", [snap])


def _place(node: devchain.DevChain, w3: Web3, artifact: dict, address: str):
    """Deploy ``artifact`` anywhere, then copy its runtime code to ``address``."""
    sender = Signer(w3, w3.eth.accounts[0])
    factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    receipt = sender.send(factory.constructor().build_transaction({"from": sender.address}))
    code = w3.eth.get_code(receipt["contractAddress"])
    node.rpc(node.set_code, [address, "0x" + bytes(code).hex()])
    return w3.eth.contract(address=Web3.to_checksum_address(address), abi=artifact["abi"]), sender


def _op_oracle(node, w3, oracles):
    oracle, sender = _place(node, w3, oracles["MockGasPriceOracle"], fees.OP_GAS_PRICE_ORACLE)
    sender.send(oracle.functions.setParams(*BASE_PARAMS).build_transaction({"from": sender.address}))
    return oracle


def test_an_op_stack_quote_reads_the_oracles_parameters(node, w3, oracles) -> None:
    _op_oracle(node, w3, oracles)
    quote = fees.quote_fees(w3, "op-stack")
    assert quote.op == OpL1Params(*BASE_PARAMS)
    latest = w3.eth.get_block("latest")
    assert quote.gas_price == latest["baseFeePerGas"] + w3.eth.max_priority_fee


@pytest.mark.parametrize("size", [0, 40, 276, 1_000, 100_000])
def test_the_python_upper_bound_equals_the_oracles_getL1FeeUpperBound(node, w3, oracles, size: int) -> None:
    _op_oracle(node, w3, oracles)
    assert fees.quote_fees(w3, "op-stack").l1_fee(size) == fees.op_l1_fee_upper_bound(w3, size)


def test_get_l1_fee_prices_the_unsigned_encoding_of_a_real_bid_transaction(node, w3, oracles) -> None:
    _op_oracle(node, w3, oracles)
    tx = {"chainId": 8453, "nonce": 7, "maxFeePerGas": 2 * GWEI, "maxPriorityFeePerGas": 1_000_000,
          "gas": 80_000, "to": "0x" + "ab" * 20, "value": 0, "data": bytes(range(1, 229))}
    unsigned = fees.unsigned_tx_bytes(tx)
    fee = fees.op_l1_fee(w3, unsigned)
    # the stand-in prices the uncompressed size (+68 for the signature); a real chain compresses first
    assert fee == OpL1Params(*BASE_PARAMS).l1_fee_for_compressed(len(unsigned) + 68)
    assert fee <= fees.op_l1_fee_upper_bound(w3, len(unsigned))


def test_an_arbitrum_quote_prices_calldata_at_arbgasinfos_per_byte_price(node, w3, oracles) -> None:
    info, sender = _place(node, w3, oracles["MockArbGasInfo"], fees.ARB_GAS_INFO)
    sender.send(info.functions.setPrices(ARB_PRICES, 10_000_000, 30 * GWEI).build_transaction({"from": sender.address}))
    quote = fees.quote_fees(w3, "arbitrum")
    assert quote.l1_per_byte == ARB_PRICES[1]
    assert quote.tx_cost(60_901, 276) == 60_901 * quote.gas_price + ARB_PRICES[1] * (276 + 68)


def test_the_participation_estimate_includes_the_l1_data_fee_read_from_the_chain(node, w3, oracles) -> None:
    _op_oracle(node, w3, oracles)
    quote = fees.quote_fees(w3, "op-stack")
    cost = fees.participation_cost("open", quote)
    assert cost.l1_fee == fees.op_l1_fee_upper_bound(w3, fees.BID.unsigned_size) > 0
    assert cost.native_cost == fees.BID.gas * quote.gas_price + cost.l1_fee


def test_a_chain_without_the_oracle_is_named_as_the_wrong_chain(w3) -> None:
    with pytest.raises(FeeError, match="no GasPriceOracle at 0x42.*check NETWORK and RPC_URL"):
        fees.quote_fees(w3, "op-stack")
    with pytest.raises(FeeError, match="no ArbGasInfo"):
        fees.quote_fees(w3, "arbitrum")


def test_an_oracle_address_holding_other_code_gives_one_line_not_a_traceback(node, w3, oracles) -> None:
    # hostile or misconfigured chain: something at the predeploy address that is not the oracle
    _place(node, w3, oracles["MockArbGasInfo"], fees.OP_GAS_PRICE_ORACLE)
    with pytest.raises(FeeError, match="the GasPriceOracle did not answer"):
        fees.quote_fees(w3, "op-stack")


def test_an_l1_quote_needs_no_oracle(w3) -> None:
    quote = fees.quote_fees(w3, "l1")
    assert quote.l1_fee(276) == 0 and quote.gas_price > 0


def test_a_receipts_cost_is_exactly_what_the_sender_paid(w3) -> None:
    sender = Signer(w3, w3.eth.accounts[1])
    before = w3.eth.get_balance(sender.address)
    receipts = [sender.send({"from": sender.address, "to": w3.eth.accounts[2], "value": 12_345,
                             "data": b"\x01" * 40}) for _ in range(2)]
    spent = before - w3.eth.get_balance(sender.address) - 2 * 12_345
    assert fees.gas_spent(receipts) == spent
    assert all(fees.receipt_cost(r).l1_fee == 0 for r in receipts)  # anvil reports no l1Fee
