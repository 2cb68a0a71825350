"""The unit model: decimal prices per kWh in a currency, formatting for people, reference rates."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from demand_response import units
from demand_response.units import ETH, USDC, Currency, UnitError


def test_a_stablecoin_price_per_kwh_parses_to_base_units_per_kwh() -> None:
    assert units.parse_price("0.35", USDC) == 350_000
    assert units.parse_price("0.35 USDC/kWh", USDC) == 350_000
    assert units.parse_price(" 12 ", USDC) == 12_000_000


def test_an_ether_price_per_kwh_parses_to_wei_per_kwh() -> None:
    assert units.parse_price("0.0001", ETH) == 10**14
    assert units.parse_price("1e-4", ETH) == 10**14
    assert units.parse_price("0.000000000000000001", ETH) == 1


def test_trailing_zeros_within_the_currency_are_accepted() -> None:
    assert units.parse_price("0.350000", USDC) == 350_000
    assert units.parse_price("0.3500000000", USDC) == 350_000


@pytest.mark.parametrize("text, fragment", [
    ("0.3500001", "has 7 decimals; USDC has at most 6"),
    ("NaN", "not a finite number"),
    ("nan", "not a finite number"),
    ("Infinity", "not a finite number"),
    ("-Infinity", "not a finite number"),
    ("1e999", "far too large"),
    ("1e9999999999", "far too large"),
    ("-0.35", "must not be negative"),
    ("0", "must be more than 0 USDC"),
    ("1,5", "no thousands separators"),
    ("0x10", "not a number"),
    ("", "not a number"),
    ("0.35 EUR/kWh", "is in EUR/kWh, but this market uses USDC/kWh"),
])
def test_a_price_that_is_not_an_exact_amount_is_refused_with_one_line(text: str, fragment: str) -> None:
    with pytest.raises(UnitError) as info:
        units.parse_price(text, USDC)
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message


def test_a_large_amount_keeps_its_last_decimal_beyond_decimals_precision() -> None:
    # 31 significant digits: Decimal's default 28-digit context would round the last one away
    assert units.parse_amount("100000000000.000000000000000001", ETH) == 10**29 + 1
    with pytest.raises(UnitError, match="has 19 decimals"):
        units.parse_amount("100000000000.0000000000000000001", ETH)
    with pytest.raises(UnitError, match="more than 3 decimals"):
        units.parse_kw("1000000.0000000000000000000000001")


def test_a_price_above_uint256_is_refused() -> None:
    with pytest.raises(UnitError, match="too large for a contract"):
        units.parse_price("1e70", ETH)


def test_booleans_are_not_numbers_and_floats_use_their_short_form() -> None:
    with pytest.raises(UnitError):
        units.parse_price(True, USDC)
    assert units.parse_price(0.35, USDC) == 350_000  # repr, never 0.34999999999999997...


def test_power_in_kw_parses_to_whole_watts() -> None:
    assert units.parse_kw("1.25") == 1250
    assert units.parse_kw("0.13 kW") == 130
    with pytest.raises(UnitError, match="more than 3 decimals"):
        units.parse_kw("0.0001")
    with pytest.raises(UnitError, match="must be positive"):
        units.parse_kw("0")


def test_prices_read_in_the_currency_per_kwh() -> None:
    assert units.format_price(350_000, USDC) == "0.35 USDC/kWh"
    assert units.format_price(10**14, ETH) == "0.0001 ETH/kWh"
    assert units.format_price(None, USDC) == "—"


def test_amounts_read_with_grouping_and_at_most_six_decimals() -> None:
    assert units.format_amount(1_234_500_000, USDC) == "1,234.5 USDC"
    assert units.format_amount(123_456_789_012_345_678, ETH) == "0.123457 ETH"
    assert units.format_amount(0, ETH) == "0 ETH"


def test_a_tiny_amount_keeps_three_significant_digits_instead_of_reading_as_zero() -> None:
    assert units.format_amount(192_119_927_507, ETH) == "0.000000192 ETH"
    assert units.format_amount(1, ETH) == "0.000000000000000001 ETH"


def test_a_reference_rate_shows_a_fiat_figure_beside_ether_only() -> None:
    rate = units.parse_rate("3000")
    assert units.format_amount(179_375 * 10**9, ETH, rate=rate) == "0.000179 ETH (≈ $0.54)"
    assert units.format_price(10**14, ETH, rate=rate) == "0.0001 ETH/kWh (≈ $0.30/kWh)"
    assert units.format_amount(350_000, USDC, rate=rate) == "0.35 USDC"  # a stablecoin needs none


def test_net_earnings_below_zero_read_with_a_leading_minus() -> None:
    rate = units.parse_rate("3000")
    assert units.format_amount(-538_125, USDC) == "-0.538125 USDC"
    assert units.format_amount(-179_375 * 10**9, ETH, rate=rate) == "-0.000179 ETH (≈ -$0.54)"
    assert units.format_amount(-1, ETH) == "-0.000000000000000001 ETH"
    assert units.parse_rate("2500", fiat="CHF").format_fiat(-10**18) == "-2,500.00 CHF"


def test_the_reference_rate_comes_from_settings_and_is_checked() -> None:
    assert units.reference_rate({"USD_PER_ETH": "2500"}, ETH) == units.ReferenceRate("USD", "ETH", Decimal(2500))
    assert units.reference_rate({}, ETH) is None
    assert units.reference_rate({"USD_PER_ETH": "2500"}, USDC) is None
    with pytest.raises(UnitError, match="USD_PER_ETH=-1 must be positive"):
        units.reference_rate({"USD_PER_ETH": "-1"}, ETH)
    with pytest.raises(UnitError, match="not a finite number"):
        units.reference_rate({"USD_PER_ETH": "inf"}, ETH)


def test_power_energy_and_durations_read_in_one_unit_each() -> None:
    assert units.format_kw(130) == "0.13 kW"
    assert units.format_kw(1_250_000) == "1,250 kW"
    assert units.format_kwh(130 * 7200) == "0.26 kWh"
    assert units.format_duration(5400) == "90 min"
    assert units.format_duration(7200) == "2 h"
    assert units.format_duration(5400, "h") == "1.5 h"
    assert units.duration_unit([300, 3600, 5400]) == "min"
    assert units.duration_unit([3600, 7200]) == "h"
    assert units.duration_unit([30, 3600]) == "s"


def test_currencies_are_found_by_symbol_and_unlisted_tokens_by_their_decimals() -> None:
    assert units.currency("usdc") is USDC
    assert units.currency("EURC", 6) == Currency("EURC", 6)
    with pytest.raises(UnitError, match="unknown currency"):
        units.currency("EURC")
    with pytest.raises(UnitError, match="decimals must be 0-36"):
        units.currency("BIG", 99)


# -- round trips ----------------------------------------------------------------------------

_currencies = st.sampled_from([ETH, USDC, Currency("T0", 0), Currency("T2", 2)])


@given(cur=_currencies, base=st.integers(min_value=0, max_value=units.MAX_UINT256))
def test_every_amount_survives_plain_then_parse(cur: Currency, base: int) -> None:
    assert units.parse_amount(units.plain(base, cur), cur) == base


@given(cur=_currencies, base=st.integers(min_value=1, max_value=10**30))
def test_every_price_survives_its_own_formatting_with_the_unit(cur: Currency, base: int) -> None:
    text = f"{units.plain(base, cur)} {cur.symbol}/kWh"
    assert units.parse_price(text, cur) == base


@given(cur=_currencies, whole=st.integers(min_value=0, max_value=10**12),
       frac=st.integers(min_value=0, max_value=10**18 - 1), places=st.integers(min_value=0, max_value=18))
def test_a_decimal_parses_exactly_or_is_refused_for_too_many_decimals(cur: Currency, whole: int, frac: int,
                                                                      places: int) -> None:
    digits = str(frac % 10**places).rjust(places, "0") if places else ""
    text = f"{whole}.{digits}" if digits else str(whole)
    needed = len(digits.rstrip("0"))
    if needed > cur.decimals:
        with pytest.raises(UnitError, match="decimals"):
            units.parse_amount(text, cur)
    else:  # integer arithmetic: Decimal would round past 28 digits
        fraction = int(digits.rstrip("0") or "0") * 10 ** (cur.decimals - needed)
        assert units.parse_amount(text, cur) == whole * cur.one + fraction


@given(cur=_currencies, base=st.integers(min_value=0, max_value=10**30))
def test_the_display_form_is_within_half_a_shown_digit_of_the_amount(cur: Currency, base: int) -> None:
    text = units.format_amount(base, cur, symbol=False).replace(",", "")
    shown = Decimal(text)
    exact = units.to_decimal(base, cur)
    places = -shown.as_tuple().exponent if "." in text else 0
    assert abs(shown - exact) <= Decimal(1).scaleb(-max(places, min(cur.decimals, 6))) / 2
    if base:
        assert shown != 0  # a non-zero amount never reads as 0


@given(text=st.one_of(st.text(max_size=40), st.from_regex(r"-?[0-9]{0,40}(\.[0-9]{0,40})?([eE][+-]?[0-9]{1,12})?")))
def test_any_text_is_a_price_or_one_unit_error_never_another_exception(text: str) -> None:
    try:
        value = units.parse_price(text, USDC)
    except UnitError as exc:
        assert "\n" not in str(exc)
    else:
        assert 0 < value <= units.MAX_UINT256
