"""``python -m demand_response.devices demo``: the actuation demo (see docs/devices.md)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Run the demo; one line on a missing broker or library."""
    args = sys.argv[1:] if argv is None else argv
    if args[:1] != ["demo"]:
        print("usage: python -m demand_response.devices demo", file=sys.stderr)
        return 2
    from .core import DeviceError
    from .demo import run_demo

    try:
        result = run_demo()
    except (FileNotFoundError, DeviceError, TimeoutError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0 if not any(result["during"][d] for d in ("water-heater", "dryer")) and all(result["after"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
