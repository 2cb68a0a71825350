"""The web app's HTTP status of an error comes from its type, never from its message."""

from __future__ import annotations

import pytest
import requests
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import NotFound

from demand_response.errors import (AccountBusy, BidsError, ChainError, ConfigError, ConnectionProblem,
                                    ReceiptTimeout, TransactionFailed, WrongChain)
from demand_response.planner import PlanError, Problem
from flaskapp.errors import NeedsPassword, RoleDisabled, status_of


def _caused_by(cause: BaseException) -> ChainError:
    try:
        raise ChainError("the call failed") from cause
    except ChainError as exc:
        return exc


@pytest.mark.parametrize(("error", "status"), [
    (ConnectionProblem("cannot reach the RPC endpoint"), 503),
    (ReceiptTimeout("no receipt"), 503),
    (_caused_by(requests.exceptions.ConnectionError("refused")), 503),
    (WrongChain("wrong chain"), 409),
    (TransactionFailed("contract refused: BiddingStillOpen", "BiddingStillOpen"), 409),
    (ConfigError("bad .env value"), 409),
    (BidsError("bad bids.json"), 409),
    (AccountBusy("account used by consumer run (pid 1)", pid=1), 409),
    (NeedsPassword("consumer", "alice"), 409),
    (PlanError([Problem("target_kw", "the target must be positive")]), 409),
    (RoleDisabled("utility pages are off"), 403),
    (CSRFError(), 400),
    (NotFound(), 404),
    (KeyError("a bug"), 500),
])
def test_the_status_of_an_error_is_chosen_by_its_type(error: BaseException, status: int) -> None:
    assert status_of(error) == status


def test_a_message_that_reads_like_a_connection_problem_does_not_make_one() -> None:
    assert status_of(ChainError("cannot reach the RPC endpoint; the node is not answering")) == 409
