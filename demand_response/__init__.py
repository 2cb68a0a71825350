"""Blockchain demand response: market contract tooling, daemons and simulation."""

__version__ = "0.1.0"
