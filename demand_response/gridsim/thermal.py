"""Equivalent thermal parameter (ETP) house model, closed forms and an exact stepper.

Two-node ETP model as in the GridLAB-D ``house_e`` object (SI units)::

    CA dTa/dt = UA (To - Ta) + HM (Tm - Ta) + Qa
    CM dTm/dt = HM (Ta - Tm) + Qm

``Ta`` indoor air, ``Tm`` mass temperature (deg C), ``To`` outdoor temperature,
``UA`` envelope conductance (W/K), ``HM`` air-mass conductance (W/K), ``CA``/``CM``
heat capacities (J/K), ``Qa``/``Qm`` heat into the air/mass node (W; HVAC
cooling is a negative ``Qa``).

All functions broadcast over numpy arrays of household parameters.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _eigs(ua: Any, ca: Any, hm: Any, cm: Any) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (slow ``l1`` closer to 0, fast ``l2``) of the 2x2 system matrix."""
    ua, ca, hm, cm = (np.asarray(x, dtype=float) for x in (ua, ca, hm, cm))
    a11 = -(ua + hm) / ca
    a22 = -hm / cm
    tr = a11 + a22
    det = ua * hm / (ca * cm)
    disc = np.sqrt((a11 - a22) ** 2 + 4.0 * hm * hm / (ca * cm))
    l2 = 0.5 * (tr - disc)  # most negative; never 0 for positive parameters
    l1 = det / l2  # product of roots = det; avoids cancellation
    return l1, l2


def air_step_response(ua: Any, ca: Any, hm: Any, cm: Any, t: Any) -> np.ndarray:
    """Air-temperature rise per watt (K/W) after a heat step into the air node.

    Starting from equilibrium, a constant extra heat ``q`` (W) into the air node
    raises the air temperature by ``q * g(t)``, with the closed form::

        g(t) = 1/UA + c1 exp(l1 t) + c2 exp(l2 t),   g(0) = 0, g'(0) = 1/CA

    ``g`` is increasing in ``t`` and tends to ``1/UA``.  With ``HM = 0`` it reduces
    to the single-node ``(1 - exp(-UA t / CA)) / UA``.
    """
    ua, ca, hm, cm = (np.asarray(x, dtype=float) for x in (ua, ca, hm, cm))
    t = np.asarray(t, dtype=float)
    l1, l2 = _eigs(ua, ca, hm, cm)
    c1 = (1.0 / ca + l2 / ua) / (l1 - l2)
    c2 = -1.0 / ua - c1
    return 1.0 / ua + c1 * np.exp(l1 * t) + c2 * np.exp(l2 * t)


def single_node_response(ua: Any, ca: Any, t: Any, ta0: Any, t_out: Any, q: Any) -> np.ndarray:
    """Closed-form single-node air temperature with constant ``To`` and ``Qa``."""
    ua, ca = np.asarray(ua, dtype=float), np.asarray(ca, dtype=float)
    t_eq = np.asarray(t_out, dtype=float) + np.asarray(q, dtype=float) / ua
    return t_eq + (np.asarray(ta0, dtype=float) - t_eq) * np.exp(-ua * np.asarray(t, dtype=float) / ca)


def _phi_gamma(ua: float, ca: float, hm: float, cm: float, dt: float) -> tuple[np.ndarray, np.ndarray]:
    """Exact zero-order-hold discretisation of the 2-node model for one household.

    Returns ``Phi`` (2x2) and ``Gamma`` (2x3) such that
    ``x[k+1] = Phi x[k] + Gamma [To, Qa, Qm]`` for inputs held over the step.
    Uses Sylvester's formula for distinct real eigenvalues.
    """
    a = np.array([[-(ua + hm) / ca, hm / ca], [hm / cm, -hm / cm]])
    b = np.array([[ua / ca, 1.0 / ca, 0.0], [0.0, 0.0, 1.0 / cm]])
    l1, l2 = (float(v) for v in _eigs(ua, ca, hm, cm))
    eye = np.eye(2)
    p1 = (a - l2 * eye) / (l1 - l2)  # spectral projector for l1
    p2 = (a - l1 * eye) / (l2 - l1)
    phi = np.exp(l1 * dt) * p1 + np.exp(l2 * dt) * p2

    def _int_exp(lam: float) -> float:  # integral_0^dt exp(lam s) ds
        return dt if abs(lam) * dt < 1e-12 else float(np.expm1(lam * dt) / lam)

    gamma = (_int_exp(l1) * p1 + _int_exp(l2) * p2) @ b
    return phi, gamma


def etp_simulate(
    ua: float, ca: float, hm: float, cm: float,
    ta0: float, tm0: float,
    t_out: Any, q_air: Any, q_mass: Any, dt: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Simulate one house with inputs held constant over each step of ``dt`` seconds.

    ``t_out``, ``q_air`` and ``q_mass`` are sequences of length K (values over each
    step; scalars broadcast).  Returns ``(ta, tm)`` of length K+1 (state at step
    boundaries).  Exact for piecewise-constant inputs (no integration error).
    """
    t_out, q_air, q_mass = np.broadcast_arrays(
        np.atleast_1d(np.asarray(t_out, dtype=float)),
        np.atleast_1d(np.asarray(q_air, dtype=float)),
        np.atleast_1d(np.asarray(q_mass, dtype=float)),
    )
    phi, gamma = _phi_gamma(float(ua), float(ca), float(hm), float(cm), float(dt))
    u = np.stack([t_out, q_air, q_mass], axis=1)  # (K, 3)
    drive = u @ gamma.T  # (K, 2)
    k = len(t_out)
    x = np.empty((k + 1, 2))
    x[0] = (ta0, tm0)
    for i in range(k):
        x[i + 1] = phi @ x[i] + drive[i]
    return x[:, 0], x[:, 1]
