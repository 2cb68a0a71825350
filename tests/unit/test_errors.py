"""The package's errors: one base, classified by type, importable from their old homes."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest

import demand_response
from demand_response import errors
from demand_response.errors import (
    ChainError,
    ConnectionProblem,
    DRError,
    ReceiptTimeout,
    Retry,
    RetryLater,
    UserError,
    is_connection_error,
    retry_cause,
)

PACKAGE_DIR = Path(demand_response.__file__).parent
#: Modules that may need optional extras (numpy, pandapower, solcx) and are not under test here.
_SKIP = ("demand_response.gridsim", "demand_response.__main__")


def _package_modules() -> list[str]:
    names = []
    for info in pkgutil.walk_packages([str(PACKAGE_DIR)], "demand_response."):
        if not info.name.startswith(_SKIP):
            names.append(info.name)
    return names


def test_every_exception_class_the_package_defines_derives_from_drerror() -> None:
    strays = []
    for name in _package_modules():
        module = importlib.import_module(name)
        for attr, value in vars(module).items():
            if inspect.isclass(value) and issubclass(value, BaseException) and value.__module__ == name \
                    and not attr.startswith("_") and not issubclass(value, DRError):
                strays.append(f"{name}.{attr}")
    assert strays == []


@pytest.mark.parametrize("old_home, name", [
    ("demand_response.chain", "ChainError"), ("demand_response.chain", "TransactionFailed"),
    ("demand_response.chain", "Retry"), ("demand_response.chain", "WaitInterrupted"),
    ("demand_response.chain", "TransactionDropped"), ("demand_response.accounts", "AccountError"),
    ("demand_response.bids", "BidsError"), ("demand_response.config", "ConfigError"),
    ("demand_response.results", "ResultsError"), ("demand_response.sealed", "SaltStoreError"),
    ("demand_response.devchain", "DevChainError"), ("demand_response.listener", "RetryLater"),
    ("demand_response.listener", "is_connection_error"), ("demand_response.cli", "UserError"),
    ("demand_response.artifacts", "atomic_write_text"),
])
def test_old_import_locations_still_give_the_same_object(old_home: str, name: str) -> None:
    module = importlib.import_module(old_home)
    home = errors if hasattr(errors, name) else importlib.import_module("demand_response.files")
    assert getattr(module, name) is getattr(home, name)


def test_user_errors_and_chain_errors_are_told_apart_by_type() -> None:
    from demand_response.errors import AccountError, BidsError, ConfigError, ResultsError, SaltStoreError

    for kind in (ConfigError, BidsError, ResultsError, SaltStoreError, AccountError):
        assert issubclass(kind, UserError), kind
    assert not issubclass(ConnectionProblem, UserError)
    assert issubclass(ReceiptTimeout, ConnectionProblem) and issubclass(RetryLater, Retry)
    assert issubclass(ConnectionProblem, ChainError)


def test_a_connection_problem_is_recognised_by_its_type_not_its_wording() -> None:
    assert is_connection_error(ConnectionProblem("anything at all"))
    assert not is_connection_error(ChainError("cannot reach the RPC endpoint http://x"))
    try:
        try:
            raise ConnectionRefusedError(111, "refused")
        except OSError as inner:
            raise ChainError("wrapped") from inner
    except ChainError as outer:
        assert is_connection_error(outer)


def test_retry_cause_finds_the_retry_behind_a_wrapper() -> None:
    retry = RetryLater("node busy")
    try:
        try:
            raise retry
        except RetryLater as inner:
            raise RuntimeError("handler failed") from inner
    except RuntimeError as outer:
        assert retry_cause(outer) is retry


@pytest.mark.parametrize("module", ["errors", "files"])
def test_foundation_modules_import_nothing_of_the_package(module: str) -> None:
    tree = ast.parse((PACKAGE_DIR / f"{module}.py").read_text(encoding="utf-8"))
    imported = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level > 0]
    imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    imported += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 0]
    assert [name for name in imported if name.startswith("demand_response") or name in ("",)] == []
