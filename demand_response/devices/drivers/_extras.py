"""How a driver imports its protocol library: one line naming the extra to install when it is missing."""

from __future__ import annotations

import importlib
from typing import Any

from ..core import DeviceError

_EXTRA = {"paho": "paho-mqtt", "ocpp": "ocpp", "websockets": "websockets", "sunspec2": "pysunspec2",
          "pymodbus": "pymodbus", "numpy": "numpy"}


def require(module: str) -> Any:
    """Import ``module`` or raise a one-line DeviceError naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError:
        top = module.split(".")[0]
        extra = "sim" if top == "numpy" else "devices"
        raise DeviceError(f"the {_EXTRA.get(top, top)} package is missing; install the '{extra}' extra: "
                          f"pip install 'demand-response[{extra}]'") from None
