"""Where the listeners' push feed subscribes (``WS_URL`` and the RPC URL), no chain needed."""

from __future__ import annotations

import pytest

from demand_response.chain.connection import _push_target
from demand_response.errors import ConfigError


@pytest.mark.parametrize("rpc_url, ws_url, expected", [
    ("ws://127.0.0.1:8545", None, ("ws://127.0.0.1:8545", False)),  # the RPC socket's own URL
    ("wss://node.example/ws/KEY", "", ("wss://node.example/ws/KEY", False)),
    ("http://127.0.0.1:8545", None, ("ws://127.0.0.1:8545", True)),  # anvil/ganache: a guess, given up if absent
    ("http://localhost:7545/", None, ("ws://localhost:7545/", True)),
    ("https://node.example/v3/KEY", None, None),  # a remote HTTP node: polling unless WS_URL says where
    ("https://node.example/v3/KEY", "wss://node.example/ws/v3/KEY", ("wss://node.example/ws/v3/KEY", False)),
    ("ws://127.0.0.1:8545", "off", None),
    ("http://127.0.0.1:8545", " OFF ", None),
    ("/var/run/geth.ipc", None, None),
])
def test_the_push_url_follows_ws_url_then_the_rpc_url(rpc_url: str, ws_url: str | None, expected: object) -> None:
    assert _push_target(rpc_url, ws_url) == expected


def test_a_ws_url_that_is_not_a_websocket_is_one_line_naming_the_setting() -> None:
    with pytest.raises(ConfigError, match=r"WS_URL must be a ws:// or wss:// URL \(or 'off'\), not 'https://h/…'"):
        _push_target("http://127.0.0.1:8545", "https://h/secret-key")
