"""The fit at one voxel or ROI, for the viewer: the same indicator-dilution deconvolution the pipeline
runs (:mod:`perfnode.perfusion.deconvolution`), on the curve the viewer measured, against the AIF the
map's provenance records. Returns the reconvolved (fitted) curve and the voxel's CBF, CBV, MTT, Tmax.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.integrate import trapezoid

from perfnode.perfusion.deconvolution import METHODS, SvdDeconvolver, residue_peak
from perfnode.perfusion.dsc import uniform_grid
from perfnode.web.errors import BadRequest

MAX_SAMPLES = 2048


def _curve(body: dict[str, Any], key: str) -> np.ndarray:
    try:
        values = np.asarray(body[key], dtype=np.float64)
    except (KeyError, TypeError, ValueError):
        raise BadRequest(f"{key}: a list of numbers is required") from None
    if values.ndim != 1 or not 4 <= values.size <= MAX_SAMPLES:
        raise BadRequest(f"{key}: 4–{MAX_SAMPLES} samples expected, got {values.size}")
    return values


def fit_curve(body: dict[str, Any]) -> dict[str, Any]:
    """``{times_s, tissue, aif, method, kh_over_rho}`` → fitted curve and parameters (see module doc)."""
    t, tissue, aif = _curve(body, "times_s"), _curve(body, "tissue"), _curve(body, "aif")
    if not (t.size == tissue.size == aif.size):
        raise BadRequest(f"times_s, tissue and aif differ in length ({t.size}, {tissue.size}, {aif.size})")
    if not np.all(np.diff(t) > 0):
        raise BadRequest("times_s must increase")
    method = str(body.get("method") or "osvd")
    if method not in METHODS:
        raise BadRequest(f"method {method!r}: one of {', '.join(METHODS)}")
    kh = float(body.get("kh_over_rho") or 1.0)
    tissue = np.nan_to_num(tissue)
    uc, ut, dt = uniform_grid(tissue[None], t)
    ua = uniform_grid(aif[None], t)[0][0]
    try:
        solver = SvdDeconvolver(ua, dt, method=method, dtype=np.float64)
    except ValueError as exc:
        raise BadRequest(f"AIF: {exc}") from None
    deconv = solver(uc)
    peak, tmax = residue_peak(deconv.residue, dt, ua.size, deconv.circulant)
    fitted = solver.reconvolve(deconv.residue)[0]
    area_aif = float(trapezoid(aif, t))
    with np.errstate(divide="ignore", invalid="ignore"):
        cbf = kh * float(peak[0]) * 6000.0
        cbv = kh * 100.0 * float(trapezoid(tissue, t)) / area_aif if area_aif else float("nan")
        mtt = 60.0 * cbv / cbf if cbf else float("nan")

    def clean(x: Any) -> Any:
        arr = np.asarray(x, dtype=np.float64)
        return (
            [None if not np.isfinite(v) else float(v) for v in arr.ravel()]
            if arr.ndim
            else (float(arr) if np.isfinite(arr) else None)
        )

    return {
        "method": method,
        "times_s": clean(ut),
        "fitted": clean(fitted),
        "residue": clean(deconv.residue[0][: ut.size]),
        "r2": clean(deconv.r2[0]),
        "cbf": clean(cbf),
        "cbf_unit": "ml/100 g/min",
        "cbv": clean(cbv),
        "cbv_unit": "ml/100 g",
        "mtt_s": clean(mtt),
        "tmax_s": clean(tmax[0]),
        "dt_s": dt,
    }
