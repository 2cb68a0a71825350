"""How the tools write money for people: wei as ETH with six decimals.

A foundation module: it imports nothing of the package.
"""

from __future__ import annotations

#: Wei per ETH.
ETH = 10**18


def eth(wei: int) -> str:
    """Wei as a short ETH string (six decimals: ``0.000001`` is the smallest figure shown)."""
    return f"{wei / ETH:.6f}"
