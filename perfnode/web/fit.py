"""The fit at one voxel or ROI, for the viewer.

* Bolus tracking (DSC, CT): the same indicator-dilution deconvolution the pipeline runs
  (:mod:`perfnode.perfusion.deconvolution`), on the curve the viewer measured, against the AIF the map's
  provenance records: the reconvolved (fitted) curve and the voxel's CBF, CBV, MTT, Tmax.
* Tracer-kinetic models (DCE: Tofts, extended Tofts, Patlak): the model curve of the fitted parameters
  at the voxel (the maps' values) with the recorded AIF (:mod:`perfnode.perfusion.pk_models`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.integrate import trapezoid

from perfnode.perfusion.deconvolution import METHODS, SvdDeconvolver, residue_peak
from perfnode.perfusion.dsc import PARAMETRIC, uniform_grid
from perfnode.perfusion.pk_models import extended_tofts, patlak, tofts
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


PK_MODELS = ("tofts", "extended_tofts", "patlak")


def _number(body: dict[str, Any], key: str) -> float:
    try:
        return float(body[key])
    except (KeyError, TypeError, ValueError):
        raise BadRequest(f"{key}: a number is required for model {body.get('model')!r}") from None


def model_curve(body: dict[str, Any]) -> dict[str, Any]:
    """``{model, times_s, aif (plasma, mM), ktrans_per_min, kep_per_min | ps_per_min, vp}`` → the model's
    tissue concentration curve (mM) with those parameters."""
    t, aif = _curve(body, "times_s"), _curve(body, "aif")
    if t.size != aif.size or not np.all(np.diff(t) > 0):
        raise BadRequest("times_s must increase and match aif in length")
    t_min = (t - t[0]) / 60.0  # the parameters are per minute
    model = body["model"]
    if model == "tofts":
        curve = tofts(t_min, aif, _number(body, "ktrans_per_min"), _number(body, "kep_per_min"))
    elif model == "extended_tofts":
        curve = extended_tofts(
            t_min, aif, _number(body, "ktrans_per_min"), _number(body, "kep_per_min"), _number(body, "vp")
        )
    else:
        curve = patlak(t_min, aif, _number(body, "ps_per_min"), _number(body, "vp"))
    fitted = np.asarray(curve, dtype=np.float64).ravel()
    return {
        "method": model,
        "times_s": [float(v) for v in t],
        "fitted": [float(v) if np.isfinite(v) else None for v in fitted],
        "unit": "mM",
    }


def fit_curve(body: dict[str, Any]) -> dict[str, Any]:
    """``{times_s, tissue, aif, method, kh_over_rho}`` → fitted curve and parameters (see module doc)."""
    if body.get("model") in PK_MODELS:
        return model_curve(body)
    if body.get("model") is not None:
        raise BadRequest(f"model {body['model']!r}: one of {', '.join(PK_MODELS)} (or none: deconvolution)")
    t, tissue, aif = _curve(body, "times_s"), _curve(body, "tissue"), _curve(body, "aif")
    if not (t.size == tissue.size == aif.size):
        raise BadRequest(f"times_s, tissue and aif differ in length ({t.size}, {tissue.size}, {aif.size})")
    if not np.all(np.diff(t) > 0):
        raise BadRequest("times_s must increase")
    method = str(body.get("method") or "osvd")
    if method not in (*METHODS, *PARAMETRIC):
        raise BadRequest(f"method {method!r}: one of {', '.join((*METHODS, *PARAMETRIC))}")
    kh = float(body.get("kh_over_rho") or 1.0)
    tissue = np.nan_to_num(tissue)
    uc, ut, dt = uniform_grid(tissue[None], t)
    ua = uniform_grid(aif[None], t)[0][0]
    try:
        solver = SvdDeconvolver(ua, dt, method="osvd" if method in PARAMETRIC else method, dtype=np.float64)
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

    if method in PARAMETRIC:  # the pipeline's DSC/CT fit: gamma-family residue with delay, oSVD start
        from perfnode.perfusion.parametric import fit_residue, predict

        with np.errstate(invalid="ignore", divide="ignore"):
            start = np.array(
                [
                    [
                        max(float(peak[0]), 1e-4),
                        float(np.clip(cbv / kh / 100.0 / max(float(peak[0]), 1e-4), 0.5, 20)),
                        float(tmax[0]),
                    ]
                ]
            )
        shape = int(body.get("residue_shape") or 1) if method == "gamma" else 1
        area = np.array([cbv / kh / 100.0]) if method == "parametric-tied" else None
        pf = fit_residue(tissue[None], aif, t, start, shape=shape, area=area)
        params = np.column_stack([pf.flow, pf.mtt_s, pf.delay_s])
        fitted = predict(t, aif, params, shape)[0]
        ut = t
        cbf = kh * float(pf.flow[0]) * 6000.0
        cbv = kh * 100.0 * float(pf.flow[0] * pf.mtt_s[0])
        mtt = float(pf.mtt_s[0])
        tmax = pf.delay_s
        sst = float(((tissue - tissue.mean()) ** 2).sum())
        deconv.r2[0] = 1.0 - float(pf.sse[0]) / sst if sst > 0 else float("nan")

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
