"""The web app's settings come from the package's .env reading, web-only keys included."""

from __future__ import annotations

from pathlib import Path

import pytest

from flaskapp import create_app

ENV_KEYS = ("DR_ROLE", "USD_PER_ETH", "DR_REFRESH_MS", "RPC_URL", "NETWORK", "DR_ENV_FILE", "UTILITY_PRIVATE_KEY",
            "UTILITY_ACCOUNT")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ENV_KEYS:
        monkeypatch.delenv(key, raising=False)


def test_web_only_keys_are_read_from_the_env_file_under_the_environment_and_the_app_config(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = tmp_path / ".env"
    env.write_text("DR_ROLE=utility\nUSD_PER_ETH=2000\nDR_REFRESH_MS=750\nRPC_URL=http://127.0.0.1:9\n")
    monkeypatch.setenv("DR_REFRESH_MS", "900")
    config = create_app({"DR_ENV_FILE": str(env), "USD_PER_ETH": "3000"}).extensions["dr"].config
    assert config.role == "utility" and config.utility_enabled and not config.consumer_enabled
    assert config.unit.label == "ETH/kWh"  # one unit model: the market's currency per kWh
    assert config.unit.amount(179_375 * 10**9) == "0.000179 ETH (≈ $0.54)"  # the app's config wins
    assert config.refresh_ms == 900  # then the environment, then .env
    assert config.settings.rpc_url == "http://127.0.0.1:9" and config.error is None


def test_a_bad_web_setting_is_one_line_on_every_page_not_a_crash(tmp_path: Path) -> None:
    app = create_app({"DR_ENV_FILE": str(tmp_path / "none.env"), "DR_REFRESH_MS": "soon", "DR_ROLE": "consumer",
                      "RPC_URL": "http://127.0.0.1:9", "WEB_AUTH": "off"})
    assert app.extensions["dr"].config.error == "DR_REFRESH_MS='soon' is not a whole number"
    page = app.test_client().get("/consumer/bids")
    assert page.status_code == 200 and "Configuration problem: DR_REFRESH_MS=&#39;soon&#39;" in page.get_data(as_text=True)


def test_a_bad_reference_rate_is_one_line_and_prices_show_without_a_fiat_figure(tmp_path: Path) -> None:
    app = create_app({"DR_ENV_FILE": str(tmp_path / "none.env"), "USD_PER_ETH": "lots", "DR_ROLE": "consumer",
                      "RPC_URL": "http://127.0.0.1:9"})
    config = app.extensions["dr"].config
    assert config.error == "USD_PER_ETH 'lots' is not a number; write a decimal such as 0.35"
    assert config.unit.format(10**14) == "0.0001 ETH/kWh"
