"""Measurement and verification: interval meter data, baselines and checkable delivery figures.

Light by design (no numpy): a consumer board runs the store (SQLite), the CSV reader, the
baselines and the fingerprint check. PostgreSQL (``psycopg``) and CalTRACK (``opendsm``)
come with the ``mv`` extra, Green Button parsing with ``meter``. See docs/mv.md.
"""

from .baselines import (METHODS, BaselineResult, InsufficientHistory, Series, caiso_x_of_y, compute,
                        meter_before_after, pjm_high_x_of_y, sum_results)
from .fingerprint import Comparison, Fingerprint, canonical_text, data_hash, fingerprint, recompute
from .readings import INTERVALS_S, MeterDataError, Reading, check_series
from .store import Mark, MeterStore, StoreError

__all__ = [
    "INTERVALS_S", "METHODS", "BaselineResult", "Comparison", "Fingerprint", "InsufficientHistory", "Mark",
    "MeterDataError", "MeterStore", "Reading", "Series", "StoreError", "caiso_x_of_y", "canonical_text",
    "check_series", "compute", "data_hash", "fingerprint", "meter_before_after", "pjm_high_x_of_y", "recompute",
    "sum_results",
]
