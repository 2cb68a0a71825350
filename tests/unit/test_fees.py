"""Fees without a chain: the Fjord L1 fee formula, receipts with l1Fee, the participation
estimator against the pinned gas, and the bid-or-skip decision."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from demand_response import fees
from demand_response.fees import FeeQuote, OpL1Params
from demand_response.networks import FeeModel
from demand_response.units import ETH, USDC

GWEI = 10**9
# Inputs of the Fjord worked example below: 1 gwei L1 base fee, 1 wei blob fee, Base's scalars.
BASE_LIKE = OpL1Params(l1_base_fee=GWEI, blob_base_fee=1, base_fee_scalar=2269, blob_base_fee_scalar=1_055_778)


def _pinned_gas() -> dict[str, int]:
    path = Path(__file__).parents[1] / "contract" / "test_gas.py"
    spec = importlib.util.spec_from_file_location("_pinned_gas", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module.PINNED


def test_the_estimators_gas_figures_are_the_ones_pinned_in_the_gas_tests() -> None:
    pinned = _pinned_gas()
    assert fees.BID.gas == pinned["bid1_median"]
    assert fees.CLAIM.gas == pinned["claim1"]
    assert fees.WITHDRAW.gas == pinned["withdraw"]
    assert fees.POST_BOND.gas == pinned["metered_post_bond"]
    assert fees.METERED_BID.gas == pinned["metered_bid1"]
    assert fees.REPORT.gas == pinned["metered_report"]
    assert fees.COMMIT.gas == pinned["sealed_commit_first"]
    assert fees.REVEAL.gas == pinned["sealed_reveal1"]
    assert fees.RELAYED_BID.gas == pinned["relayed100_later_per_entry"]
    assert fees.plan_gas("open") == sum(s.gas for s in fees.PLANS["open"])


def test_the_fjord_l1_fee_follows_the_spec_formula_by_hand() -> None:
    # estimated size = max(100e6, -42_585_600 + 836_500 * 200) = 124_714_400
    # fee scaled = 2269 * 16 * 1e9 + 1_055_778 * 1 = 36_304_001_055_778
    assert BASE_LIKE.l1_fee_for_compressed(200) == 124_714_400 * 36_304_001_055_778 // 10**12
    # tiny transactions pay for the 100-byte minimum
    assert BASE_LIKE.l1_fee_for_compressed(10) == 100 * 10**6 * 36_304_001_055_778 // 10**12


def test_the_upper_bound_adds_the_signature_and_lz4_overhead() -> None:
    size = 276 + 68
    assert BASE_LIKE.upper_bound(276) == BASE_LIKE.l1_fee_for_compressed(size + size // 255 + 16)


def test_a_quote_prices_l1_op_stack_and_arbitrum_transactions() -> None:
    l1 = FeeQuote(FeeModel.L1, GWEI)
    assert l1.tx_cost(60_901, 276) == 60_901 * GWEI
    op = FeeQuote(FeeModel.OP_STACK, 3_000_000, op=BASE_LIKE)
    assert op.tx_cost(60_901, 276) == 60_901 * 3_000_000 + BASE_LIKE.upper_bound(276)
    arb = FeeQuote(FeeModel.ARBITRUM, 20_000_000, l1_per_byte=16 * 30_000_000)
    assert arb.tx_cost(60_901, 276) == 60_901 * 20_000_000 + 16 * 30_000_000 * (276 + 68)


def test_an_op_stack_receipt_adds_its_l1_fee_and_raw_hex_fields_are_read() -> None:
    raw = {"gasUsed": hex(60_901), "effectiveGasPrice": hex(3_000_000), "l1Fee": hex(4_527_000_000)}
    cost = fees.receipt_cost(raw)
    assert cost.total == 60_901 * 3_000_000 + 4_527_000_000
    plain = {"gasUsed": 32_784, "effectiveGasPrice": GWEI}
    assert fees.gas_spent([raw, plain]) == cost.total + 32_784 * GWEI


def test_a_receipt_without_an_effective_price_is_refused_with_one_line() -> None:
    with pytest.raises(fees.FeeError, match="no effectiveGasPrice"):
        fees.receipt_cost({"gasUsed": 21_000})


def test_participation_at_one_gwei_costs_what_the_issue_measured() -> None:
    cost = fees.participation_cost("open-self-claim", FeeQuote(FeeModel.L1, GWEI), settlement=USDC,
                                   settlement_per_native=3000)
    # bid + claim + withdraw: the issue measured 179k; paidOut folded into the slot claims
    # write (issue 15) took the claim from 85,785 to 63,915 gas, and the claims' own request
    # slot (reserve counted down as `unpaid`) to 61,971.
    gas = fees.plan_gas("open-self-claim")
    assert gas == 154_863
    assert cost.gas == gas
    assert cost.native_cost == gas * GWEI
    assert cost.cost == gas * 3  # 0.464589 USDC at 3,000 USDC/ETH (the issue's "about $0.54" before)
    assert cost.describe(ETH) == "3 transactions, 154,863 gas: 0.000155 ETH = 0.464589 USDC"


def test_the_one_transaction_target_costs_well_under_half_of_claiming_yourself() -> None:
    quote = FeeQuote(FeeModel.L1, GWEI)
    today = fees.participation_cost("open-self-claim", quote)
    target = fees.participation_cost("open", quote)
    assert target.native_cost * 2.5 < today.native_cost
    assert target.describe() == f"1 transaction, {fees.BID.gas:,} gas: 0.00006 ETH"
    custom = fees.participation_cost((fees.BID, fees.WITHDRAW), quote)
    assert (custom.plan, custom.transactions, custom.gas) == ("bid+withdraw", 2, fees.BID.gas + fees.WITHDRAW.gas)


def test_a_cost_in_another_currency_needs_a_rate_and_is_rounded_up() -> None:
    with pytest.raises(ValueError, match="USDC per ETH"):
        fees.convert(10**18, ETH, USDC, None)
    assert fees.convert(1, ETH, USDC, 3000) == 1  # 3e-15 USDC rounds up to 1 base unit
    assert fees.convert(10**18, ETH, USDC, "2999.5") == 2_999_500_000
    assert fees.convert(123, ETH, ETH, None) == 123


def test_an_offer_that_cannot_cover_its_cost_is_skipped_with_a_reason() -> None:
    decision = fees.worth_bidding(50_000, 538_125, 0.25, USDC)
    assert not decision.bid
    assert decision.reason == ("skip: pays 0.05 USDC at its ask, but taking part costs 0.538125 USDC; it needs "
                               "at least 0.672657 USDC with a 25 % margin (raise the price or offer more kW)")


def test_an_offer_that_covers_its_cost_with_the_margin_is_sent() -> None:
    decision = fees.worth_bidding(1_000_000, 20_000, 0.25, USDC)
    assert decision.bid
    assert decision.reason == "bid: pays at least 1 USDC at its ask; taking part costs 0.02 USDC (2.0 % of the payout)"
    assert fees.worth_bidding(25_000, 20_000, 0.25, USDC).bid  # exactly cost × 1.25
    assert not fees.worth_bidding(24_999, 20_000, 0.25, USDC).bid


def test_a_zero_payout_is_never_worth_a_transaction_and_a_negative_margin_is_refused() -> None:
    assert not fees.worth_bidding(0, 0, 0, USDC).bid
    with pytest.raises(ValueError, match="margin"):
        fees.worth_bidding(1, 1, -0.1, USDC)


def test_unsigned_transactions_encode_like_the_oracle_expects() -> None:
    tx = {"chainId": 8453, "nonce": 0, "maxFeePerGas": GWEI, "maxPriorityFeePerGas": 1, "gas": 21_000,
          "to": "0x" + "11" * 20, "value": 0, "data": b""}
    encoded = fees.unsigned_tx_bytes(tx)
    assert encoded[0] == 2 and len(encoded) < 60
    legacy = fees.unsigned_tx_bytes({"nonce": 1, "gasPrice": GWEI, "gas": 21_000, "to": "0x" + "11" * 20,
                                     "chainId": 246, "data": "0x" + "ab" * 228})
    assert legacy[0] >= 0xC0 and len(legacy) > 228


def test_gas_prices_read_in_gwei() -> None:
    assert fees.format_gas_price(GWEI) == "1 gwei"
    assert fees.format_gas_price(2_000_000) == "0.002 gwei"
    assert fees.format_gas_price(0) == "0 gwei"
    # A node's quote is not read to nine decimals: three significant digits, whole from 100 up.
    assert fees.format_gas_price(1_044_506_372) == "1.04 gwei"
    assert fees.format_gas_price(1_234_567) == "0.00123 gwei"
    assert fees.format_gas_price(25_300_000_000) == "25.3 gwei"
    assert fees.format_gas_price(123_456_000_000) == "123 gwei"
