"""Enrolment for a contract deployed in registered mode.

    brownie run scripts/register.py [main remote]              # consumer: ask to be enrolled
    python scripts/register.py [remote] [--enrol ADDRESS ...]  # utility: enrol consumers
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from demand_response.scripting import run_cli  # noqa: E402


def main(mode: str = "local", *enrol: str) -> None:
    """Request enrolment, or (with addresses) enrol them as the utility."""
    args = ["register"]
    for address in enrol:
        args += ["--enrol", address]
    run_cli(args, mode)


if __name__ == "__main__":
    argv = sys.argv[1:]
    mode = argv.pop(0) if argv and argv[0] in ("local", "remote") else "local"
    main(mode, *[a for a in argv if a != "--enrol"])
