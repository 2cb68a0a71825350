"""The web's money for a request settled in a token: a results record in TUSD shows paid and
net in TUSD and gas in ETH, a net is never made up without a rate, and totals never add two
currencies together."""

from __future__ import annotations

from flaskapp import presenters
from flaskapp.units import Money

ETH_MONEY = Money()


def _token_record(net: bool) -> dict:
    return {"request_id": 7, "currency": "TUSD", "currency_decimals": 6, "token": "0x" + "11" * 20,
            "status": "won", "accepted_watts": 2000, "paid_units": 600_000, "payout_units": 600_000,
            "gas_wei": 114 * 10**12, "gas_units": 342_000 if net else None, "net_units": 258_000 if net else None}


def test_a_token_record_shows_paid_and_net_in_the_token_and_gas_in_eth() -> None:
    (row,), _ = presenters.record_rows([_token_record(net=True)], ETH_MONEY)
    assert row["money"] == {"paid": "0.6 TUSD", "gas": "0.000114 ETH (0.342 TUSD)", "net": "0.258 TUSD"}


def test_without_a_reference_rate_a_token_records_net_is_unknown_never_a_mixed_figure() -> None:
    (row,), _ = presenters.record_rows([_token_record(net=False)], ETH_MONEY)
    assert row["money"] == {"paid": "0.6 TUSD", "gas": "0.000114 ETH", "net": "—"}


def test_an_ether_record_keeps_its_money_in_eth() -> None:
    (row,), _ = presenters.record_rows([{"request_id": 1, "paid_wei": 3 * 10**15, "gas_wei": 10**14,
                                        "net_wei": 29 * 10**14}], ETH_MONEY)
    assert row["money"] == {"paid": "0.003 ETH", "gas": "0.0001 ETH", "net": "0.0029 ETH"}


def test_the_utilitys_totals_add_only_requests_in_the_markets_currency() -> None:
    def row(currency: str, paid: int) -> dict:
        return {"currency": currency, "accepted_watts": 1000, "target_watts": 1000, "state": "settled",
                "promised_wei": str(paid), "paid_wei": str(paid), "refund_wei": "0", "budget_wei": str(paid)}

    history = presenters.utility_history([row("ETH", 10**15), row("TUSD", 5_000_000)], ETH_MONEY)
    assert history["totals"]["paid_wei"] == str(10**15) and history["totals"]["currency"] == "ETH"
    assert history["totals"]["other_currency_requests"] == 1 and len(history["requests"]) == 2
