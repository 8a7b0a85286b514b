"""DCE-MRI pharmacokinetic fitting of whole volumes: Tofts, extended Tofts, Patlak, 2CXM, 2CUM.

``DCEModel(times_s, aif_mM, model=...).fit(conc)`` fits every voxel at once:

- ``method="linear"``: linearised least squares (Murase, MRM 2004;51:858 for (extended) Tofts; the
  Patlak plot, which is linear anyway), one batched normal-equation solve for all voxels;
- ``method="nlls"`` (default): the linear solution (or, for 2CXM/2CUM, a few starts derived from
  it) refined by batched bounded Levenberg–Marquardt on the model curves themselves.

An optional arterial delay is fitted by a grid search over shifts of the AIF (linear fits only,
shared across voxels) followed by the non-linear refinement with the delay free.
Concentrations in mM, times given in seconds (rates are reported per minute).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from perfnode.perfusion import pk_models as pk
from perfnode.perfusion.base import FitResult, as_curves, to_maps
from perfnode.perfusion.lm import Jacobian, chunks, fd_jacobian, levenberg_marquardt, map_chunks, r_squared
from perfnode.perfusion.population_aif import parker_aif


@dataclass(frozen=True)
class _Spec:
    params: tuple[str, ...]
    lower: tuple[float, ...]
    upper: tuple[float, ...]
    linear: bool  # a linearised (Murase/Patlak) solution exists


SPECS = {
    "tofts": _Spec(("ktrans", "kep"), (0.0, 1e-3), (5.0, 100.0), True),
    "extended_tofts": _Spec(("ktrans", "kep", "vp"), (0.0, 1e-3, 0.0), (5.0, 100.0, 1.0), True),
    "patlak": _Spec(("ps", "vp"), (0.0, 0.0), (5.0, 1.0), True),
    "2cxm": _Spec(("fp", "ps", "vp", "ve"), (1e-3, 0.0, 1e-3, 1e-3), (20.0, 5.0, 1.0, 1.0), False),
    "2cum": _Spec(("fp", "ps", "vp"), (1e-3, 0.0, 1e-3), (20.0, 5.0, 1.0), False),
}
UNITS = {"ktrans_per_min": "min-1", "kep_per_min": "min-1", "ve": "1", "vp": "1", "ps_per_min": "min-1",
         "fp_ml_per_100ml_per_min": "ml/100ml/min", "delay_s": "s"}


def _predict(model: str, t: np.ndarray, cp: np.ndarray, p: np.ndarray) -> np.ndarray:
    if model == "tofts":
        return pk.tofts(t, cp, p[:, 0], p[:, 1])
    if model == "extended_tofts":
        return pk.extended_tofts(t, cp, p[:, 0], p[:, 1], p[:, 2])
    if model == "patlak":
        return pk.patlak(t, cp, p[:, 0], p[:, 1])
    if model == "2cxm":
        return pk.two_cxm(t, cp, p[:, 0], p[:, 1], p[:, 2], p[:, 3])
    return pk.two_cum(t, cp, p[:, 0], p[:, 1], p[:, 2])


def _two_cxm_jacobian(t: np.ndarray, cp: np.ndarray) -> Jacobian:
    """Jacobian of the 2CXM curve ``Fp·[(1−E)·X(K₊) + E·X(K₋)]``, ``X(K) = cp ⊛ e^{−Kt}``, by the chain
    rule: the two convolutions and their derivatives in K (4 convolutions; forward differences in all
    four parameters would take 8), the derivatives of (K₊, K₋, E) in (Fp, PS, vp, ve) by differences
    of their closed forms (per-voxel scalars, free)."""

    def jac(p: np.ndarray, idx: np.ndarray, f: np.ndarray) -> np.ndarray:
        fp, ps, vp, ve = p.T
        kp, km, e = pk.two_cxm_rates(fp, ps, vp, ve)
        xp, xm = pk.expconv(t, cp, kp), pk.expconv(t, cp, km)
        hp, hm = 1e-6 * kp + 1e-9, 1e-6 * km + 1e-9
        dxp = (pk.expconv(t, cp, kp + hp) - xp) / hp[:, None]
        dxm = (pk.expconv(t, cp, km + hm) - xm) / hm[:, None]
        out = np.empty((*f.shape, 4))
        for j in range(4):
            q = p.copy()
            h = 1e-7 * np.abs(q[:, j]) + 1e-10
            q[:, j] += h
            kp2, km2, e2 = pk.two_cxm_rates(*q.T)
            dkp, dkm, de = (kp2 - kp) / h, (km2 - km) / h, (e2 - e) / h
            d = fp[:, None] * ((-de)[:, None] * xp + ((1 - e) * dkp)[:, None] * dxp
                               + de[:, None] * xm + (e * dkm)[:, None] * dxm)
            if j == 0:
                d += (1 - e)[:, None] * xp + e[:, None] * xm
            out[:, :, j] = d
        return out

    return jac


def _solve_normal(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Batched least squares ``X (m, t, k) · b ≈ y (m, t)`` via ridge-stabilised normal equations."""
    Xt = X.transpose(0, 2, 1)
    A = np.matmul(Xt, X)
    tr = np.trace(A, axis1=1, axis2=2)[:, None, None]
    A = A + (1e-12 * tr + 1e-300) * np.eye(X.shape[2])
    return np.linalg.solve(A, np.matmul(Xt, y[..., None]))[..., 0]


def linear_two_compartment(model: str, t: np.ndarray, cp: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Linear least-squares 2CXM / 2CUM parameters ``(m, k)`` (Flouri, Lesnic & Sourbron, MRM
    2016;76:998): integrating the model's second-order ODE twice gives, with zero initial values,

    2CXM: ``C = −α∫C − β∫∫C + Fp∫Ca + γ∫∫Ca``, ``α = (Fp+PS)/vp + PS/ve``, ``β = Fp·PS/(vp·ve)``,
    ``γ = Fp·PS·(vp+ve)/(vp·ve)``;  2CUM: ``C = −α∫C + Fp∫Ca + γ∫∫Ca``, ``α = (Fp+PS)/vp``, ``γ = Fp·PS/vp``;

    linear in the coefficients, solved for all voxels by one batched normal-equation solve; the
    parameters follow in closed form (NaN where the coefficients are not those of a model curve).
    """
    cp = np.atleast_1d(cp)
    ic = pk.cumtrapz(c, t)
    iic = pk.cumtrapz(ic, t)
    ica = pk.cumtrapz(cp, t)
    iica = pk.cumtrapz(ica, t)
    cols = [-ic, -iic] if model == "2cxm" else [-ic]
    X = np.stack([*cols, *(np.broadcast_to(v, c.shape) for v in (ica, iica))], axis=-1)
    b = _solve_normal(X, c)
    with np.errstate(divide="ignore", invalid="ignore"):
        if model == "2cxm":
            alpha, beta, fp, gamma = b.T
            v = gamma / beta  # vp + ve
            vp = fp / (alpha - beta * v / fp)
            ve = v - vp
            ps = beta * vp * ve / fp
            out = np.column_stack([fp, ps, vp, ve])
        else:
            alpha, fp, gamma = b.T
            vp = fp / (alpha - gamma / fp)
            ps = gamma * vp / fp
            out = np.column_stack([fp, ps, vp])
    out[~np.all(np.isfinite(out), axis=1) | np.any(out <= 0, axis=1)] = np.nan
    return out


def linear_fit(model: str, t: np.ndarray, cp: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Linearised least-squares parameters ``(m, k)`` in the order of ``SPECS[model].params``."""
    if model in ("2cxm", "2cum"):
        return linear_two_compartment(model, t, cp, c)
    if model not in ("tofts", "extended_tofts", "patlak"):
        raise ValueError(f"no linear solution for model {model!r}")
    cp = np.atleast_2d(cp)
    icp = pk.cumtrapz(cp, t)
    m = c.shape[0]
    if cp.shape[0] > 1:  # per-voxel AIF: assemble the design matrix explicitly
        cols = {"patlak": [icp, cp], "tofts": [icp, -pk.cumtrapz(c, t)],
                "extended_tofts": [icp, -pk.cumtrapz(c, t), cp]}[model]
        b = _solve_normal(np.stack([np.broadcast_to(x, c.shape) for x in cols], axis=-1), c)
    else:
        # shared AIF columns: the normal equations need only dot products (BLAS matrix-vector)
        shared = [icp[0]] if model == "tofts" else [icp[0], cp[0]]
        voxel = [] if model == "patlak" else [-pk.cumtrapz(c, t)]
        k = len(shared) + len(voxel)
        A = np.empty((m, k, k))
        rhs = np.empty((m, k))
        for i, u in enumerate(shared):
            rhs[:, i] = c @ u
            for j, v in enumerate(shared):
                A[:, i, j] = u @ v
        for a, w in enumerate(voxel, start=len(shared)):
            rhs[:, a] = np.einsum("mt,mt->m", c, w)
            A[:, a, a] = np.einsum("mt,mt->m", w, w)
            for i, u in enumerate(shared):
                A[:, a, i] = A[:, i, a] = w @ u
        if model == "extended_tofts":  # order the columns as (∫cp, −∫C, cp)
            perm = [0, 2, 1]
            A, rhs = A[:, perm][:, :, perm], rhs[:, perm]
        tr = np.trace(A, axis1=1, axis2=2)[:, None, None]
        b = np.linalg.solve(A + (1e-12 * tr + 1e-300) * np.eye(k), rhs[..., None])[..., 0]
    if model == "extended_tofts":
        return np.column_stack([b[:, 0] - b[:, 1] * b[:, 2], b[:, 1], b[:, 2]])
    return b


class DCEModel:
    """A DCE acquisition and kinetic model; ``fit(conc)`` returns maps in stated units.

    ``aif`` is the arterial **plasma** concentration (mM) at ``times_s`` (e.g. from
    :func:`measured_aif`), or ``"parker"`` for the Parker population AIF with ``hematocrit`` and
    ``aif_start_s``. A measured **blood** curve is converted with ``aif_is_blood=True`` (÷ (1 − Hct)).
    Parameters are bounded (``SPECS``; ve ≤ 1 for the Tofts models); ``fit_delay`` adds an arterial
    delay within ``delay_bounds_s``; ``workers`` threads fit chunks of ``chunk_voxels`` voxels.
    """

    def __init__(self, times_s: ArrayLike, aif: ArrayLike | str = "parker", model: str = "extended_tofts",
                 method: str = "nlls",
                 hematocrit: float = 0.42, aif_start_s: float = 0.0, aif_is_blood: bool = False,
                 fit_delay: bool = False, delay_bounds_s: tuple[float, float] = (-10.0, 10.0),
                 delay_s: float = 0.0, max_iter: int = 500, chunk_voxels: int = 16384,
                 workers: int | None = None) -> None:
        if model not in SPECS:
            raise ValueError(f"unknown DCE model {model!r}; choose one of {tuple(SPECS)}")
        if method not in ("nlls", "linear"):
            raise ValueError(f"unknown method {method!r}; choose 'nlls' or 'linear'")
        if method == "linear" and not SPECS[model].linear:
            raise ValueError(f"model {model!r} has no linear solution; use method='nlls'")
        self.times_s = np.asarray(times_s, dtype=np.float64).ravel()
        if self.times_s.size < 3 or np.any(np.diff(self.times_s) <= 0):
            raise ValueError("times_s must be at least 3 strictly increasing sample times (s)")
        self.t_min = self.times_s / 60.0
        if isinstance(aif, str):
            if aif != "parker":
                raise ValueError(f"unknown population AIF {aif!r}")
            cp = parker_aif(self.times_s, hematocrit=hematocrit, t_start_s=aif_start_s)
            self.aif_name = f"Parker 2006 (Hct {hematocrit}, start {aif_start_s} s)"
        else:
            cp = np.asarray(aif, dtype=np.float64).ravel()
            if cp.size != self.times_s.size:
                raise ValueError(f"AIF has {cp.size} samples, times_s has {self.times_s.size}")
            if aif_is_blood:
                cp = cp / (1.0 - hematocrit)
            self.aif_name = "measured (blood→plasma)" if aif_is_blood else "given plasma curve"
        self.cp = cp
        self.model, self.method = model, method
        self.hematocrit = hematocrit
        self.fit_delay, self.delay_bounds_s, self.delay_s = fit_delay, delay_bounds_s, float(delay_s)
        self.max_iter, self.chunk_voxels, self.workers = max_iter, chunk_voxels, workers

    # -- fitting -------------------------------------------------------------------------------
    def fit(self, conc: np.ndarray, mask: np.ndarray | None = None, time_axis: int = -1) -> FitResult:
        """Fit concentration curves (mM): any ``(..., t)`` array, or ``(t, z, y, x)`` with ``time_axis=0``."""
        c, spatial, sel = as_curves(conc, time_axis, mask)
        if c.shape[1] != self.times_s.size:
            raise ValueError(f"data has {c.shape[1]} time points, model has {self.times_s.size}")
        finite = np.all(np.isfinite(c), axis=1)
        spec = SPECS[self.model]
        k = len(spec.params) + self.fit_delay
        params = np.full((c.shape[0], k), np.nan)
        sse = np.full(c.shape[0], np.nan)
        converged = np.zeros(c.shape[0], bool)
        idx_ok = np.flatnonzero(finite)

        def run(sl: slice) -> int:
            ii = idx_ok[sl]
            p, s, conv = self._fit_chunk(c[ii])
            params[ii], sse[ii], converged[ii] = p, s, conv
            return int((~conv).sum())

        not_converged = sum(map_chunks(run, chunks(idx_ok.size, self.chunk_voxels), self.workers))
        failures: Counter[str] = Counter()
        failures["non-finite samples"] = int((~finite).sum())
        lo, hi = self._bounds()
        if self.method == "linear":
            unphysical = ~np.isfinite(params) | (params < lo - 1e-12) | (params > hi + 1e-12)
            out = finite & np.any(unphysical, axis=1)
            if self.model in ("tofts", "extended_tofts"):
                out |= finite & (params[:, 0] > params[:, 1] * (1 + 1e-9))  # ve = Ktrans/kep > 1
            failures["linear solution outside physical bounds"] = int(out.sum())
            params[out] = np.nan
            sse[out] = np.nan
        quality = r_squared(c, sse)
        if self.method == "nlls":
            quality = np.where(finite & ~converged, 0.0, quality)  # 0 = the fit did not converge
            if not_converged:
                failures["fit did not converge (iteration limit)"] = not_converged
        maps, units = self._maps(params)
        failures = Counter({key: v for key, v in failures.items() if v})
        prov = {"model": self.model, "method": self.method, "aif": self.aif_name,
                "parameters": list(spec.params) + (["delay"] if self.fit_delay else []),
                "bounds_lower": lo.tolist(), "bounds_upper": hi.tolist(), "time_unit_internal": "min",
                "fixed_delay_s": None if self.fit_delay else self.delay_s,
                "convolution": "exact recursive, piecewise-linear AIF",
                "iteration_limit_reached": not_converged, "max_iterations": self.max_iter,
                "convergence": "relative SSE decrease < 1e-8 or relative step < 1e-8, per voxel",
                "voxels_with_a_parameter_at_a_bound": int(np.sum(np.any(
                    np.isclose(params, lo) | np.isclose(params, hi), axis=1)))}
        return FitResult(maps={n: to_maps(v, spatial, sel, np.float32) for n, v in maps.items()}, units=units,
                         quality=to_maps(quality, spatial, sel, np.float32), failures=failures,
                         provenance=prov, converged=None if self.method == "linear"
                         else to_maps(converged | ~finite, spatial, sel, bool))

    def _bounds(self) -> tuple[np.ndarray, np.ndarray]:
        spec = SPECS[self.model]
        lo, hi = list(spec.lower), list(spec.upper)
        if self.fit_delay:
            lo.append(self.delay_bounds_s[0] / 60.0)
            hi.append(self.delay_bounds_s[1] / 60.0)
        return np.array(lo), np.array(hi)

    def _cp(self, delay_min: np.ndarray | float) -> np.ndarray:
        return pk.shift_aif(self.t_min, self.cp, np.atleast_1d(delay_min))

    def _project(self, p: np.ndarray) -> np.ndarray:
        """ve = Ktrans/kep ≤ 1 for the Tofts models."""
        if self.model in ("tofts", "extended_tofts"):
            p[:, 1] = np.maximum(p[:, 1], p[:, 0])
        return p

    def _fit_chunk(self, c: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        t, model = self.t_min, self.model
        lo, hi = self._bounds()
        if self.fit_delay:
            p0 = self._delay_grid_start(c)
        else:
            cp = self._cp(self.delay_s / 60.0)[0]
            p0 = self._start(c, cp)
        if self.method == "linear":
            if not self.fit_delay:  # the raw linear solution: fit() flags the unphysical ones
                p0 = linear_fit(model, t, cp, c)
            pred = self._predict_delay(p0) if self.fit_delay else _predict(model, t, cp, p0)
            return p0, np.sum((c - pred) ** 2, axis=1), np.ones(c.shape[0], bool)
        if self.fit_delay:
            def fn_delay(p: np.ndarray, idx: np.ndarray) -> np.ndarray:
                return self._predict_delay(p)
            res = levenberg_marquardt(fn_delay, c, p0, lo, hi, fd_jacobian(fn_delay), self.max_iter,
                                      project=self._project)
            return res.params, res.sse, res.converged

        def fn(p: np.ndarray, idx: np.ndarray) -> np.ndarray:
            return _predict(model, t, cp, p)

        if model in ("tofts", "extended_tofts"):
            jac = self._tofts_jacobian(cp)
        elif model == "2cxm":
            jac = _two_cxm_jacobian(t, cp)
        else:
            jac = fd_jacobian(fn)
        if p0.ndim == 3:  # several starts for the voxels that differ between them: keep the best
            first = levenberg_marquardt(fn, c, p0[0], lo, hi, jac, self.max_iter, project=self._project)
            best_p, best_s, best_c = first.params, first.sse, first.converged
            # the other starts only where the first did not converge (voxels without a valid linear solution
            # start from the middle of three extended-Tofts-derived guesses)
            multi = np.flatnonzero(np.any(p0[1:] != p0[0], axis=(0, 2)) & ~best_c)
            for j in range(1, p0.shape[0]):
                if multi.size == 0:
                    break
                cm = c[multi]

                def fm(p: np.ndarray, idx: np.ndarray, _rows: np.ndarray = multi) -> np.ndarray:
                    return _predict(model, t, cp, p)

                jm = fd_jacobian(fm)
                res = levenberg_marquardt(fm, cm, p0[j][multi], lo, hi, jm, self.max_iter,
                                          project=self._project)
                b = res.sse < best_s[multi]
                rows = multi[b]
                best_p[rows], best_s[rows], best_c[rows] = res.params[b], res.sse[b], res.converged[b]
            return best_p, best_s, best_c
        res = levenberg_marquardt(fn, c, p0, lo, hi, jac, self.max_iter, project=self._project)
        return res.params, res.sse, res.converged

    def _predict_delay(self, p: np.ndarray) -> np.ndarray:
        return _predict(self.model, self.t_min, self._cp(p[:, -1]), p[:, :-1])

    def _tofts_jacobian(self, cp: np.ndarray) -> Jacobian:
        t, ext = self.t_min, self.model == "extended_tofts"

        def jac(p: np.ndarray, idx: np.ndarray, f: np.ndarray) -> np.ndarray:
            # the convolution at p is already inside f = Ktrans·E (+ vp·cp): recover it where Ktrans
            # is not tiny instead of recomputing it (saves a third of the convolutions)
            vpcp = p[:, 2:3] * cp if ext else 0.0
            safe = p[:, 0] > 1e-4
            e0 = np.empty_like(f)
            e0[safe] = ((f - vpcp)[safe]) / p[safe, 0:1]
            if not safe.all():
                e0[~safe] = pk.expconv(t, cp, p[~safe, 1])
            h = 1e-6 * p[:, 1] + 1e-9
            e1 = pk.expconv(t, cp, p[:, 1] + h)
            cols = [e0, p[:, 0:1] * (e1 - e0) / h[:, None]]
            if ext:
                cols.append(np.broadcast_to(cp, e0.shape))
            return np.stack(cols, axis=-1)

        return jac

    def _start(self, c: np.ndarray, cp: np.ndarray) -> np.ndarray:
        """Starting values: the linear solution clipped to bounds; for 2CXM/2CUM the linear solution of
        Flouri et al. where it is a valid model curve, else three starts from an extended-Tofts fit."""
        spec = SPECS[self.model]
        lo, hi = np.array(spec.lower), np.array(spec.upper)
        if spec.linear:
            p = linear_fit(self.model, self.t_min, cp, c)
            p = np.where(np.isfinite(p), p, 0.5 * (lo + np.minimum(hi, 1.0)))
            return self._project(np.clip(p, lo, hi))
        lin = linear_fit(self.model, self.t_min, cp, c)  # Flouri 2016: near the optimum when finite
        good = np.all(np.isfinite(lin), axis=1) & np.all((lin >= lo) & (lin <= hi), axis=1)
        if good.all():
            return lin
        et = np.clip(np.nan_to_num(linear_fit("extended_tofts", self.t_min, cp, c), nan=0.01),
                     SPECS["extended_tofts"].lower, SPECS["extended_tofts"].upper)
        ktrans, kep, vp = et[:, 0], np.maximum(et[:, 1], et[:, 0]), np.maximum(et[:, 2], 0.01)
        starts = []
        for fp in (0.1, 0.5, 2.0):
            fpv = np.maximum(fp, 2.0 * ktrans)
            ps = ktrans * fpv / np.maximum(fpv - ktrans, 1e-6)
            cols = [fpv, ps, vp] + ([np.clip(ktrans / kep, 0.01, 1.0)] if self.model == "2cxm" else [])
            start = np.clip(np.column_stack(cols), lo, hi)
            start[good] = lin[good]  # voxels with a valid linear solution start from it in every run
            starts.append(start)
        return np.stack(starts)

    def _delay_grid_start(self, c: np.ndarray) -> np.ndarray:
        """Best (linear fit, delay) over a grid of AIF shifts, per voxel."""
        step = min(float(np.median(np.diff(self.times_s))), 1.0)
        lo_s, hi_s = self.delay_bounds_s
        grid = np.arange(lo_s, hi_s + 1e-9, step)
        best_p: np.ndarray | None = None
        best_s: np.ndarray | None = None
        for d in grid:
            cp = self._cp(d / 60.0)[0]
            p = self._start(c, cp)
            if p.ndim == 3:
                p = p[1]
            s = np.sum((c - _predict(self.model, self.t_min, cp, p)) ** 2, axis=1)
            p = np.column_stack([p, np.full(c.shape[0], d / 60.0)])
            if best_p is None or best_s is None:
                best_p, best_s = p, s
            else:
                b = s < best_s
                best_p[b], best_s[b] = p[b], s[b]
        assert best_p is not None, "empty delay grid"  # arange(lo, hi) holds lo at least
        return best_p

    def _maps(self, p: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, str]]:
        m: dict[str, np.ndarray] = {}
        with np.errstate(divide="ignore", invalid="ignore"):
            if self.model in ("tofts", "extended_tofts"):
                m["ktrans_per_min"], m["kep_per_min"] = p[:, 0], p[:, 1]
                m["ve"] = p[:, 0] / p[:, 1]
                if self.model == "extended_tofts":
                    m["vp"] = p[:, 2]
            elif self.model == "patlak":
                m["ps_per_min"], m["vp"] = p[:, 0], p[:, 1]
                m["ktrans_per_min"] = p[:, 0]
            else:
                fp, ps, vp = p[:, 0], p[:, 1], p[:, 2]
                m["fp_ml_per_100ml_per_min"], m["ps_per_min"], m["vp"] = 100.0 * fp, ps, vp
                m["ktrans_per_min"] = fp * ps / (fp + ps)
                if self.model == "2cxm":
                    m["ve"] = p[:, 3]
        if self.fit_delay:
            m["delay_s"] = p[:, -1] * 60.0
        return m, {n: UNITS[n] for n in m}


def measured_aif(conc: np.ndarray, times_s: ArrayLike, mask: np.ndarray | None = None, time_axis: int = -1,
                 hematocrit: float = 0.42, n_voxels: int = 5) -> tuple[np.ndarray, dict[str, Any]]:
    """Automatic arterial input function from the concentration volume itself (plasma, mM).

    Uses :func:`perfnode.perfusion.aif.select_aif` (early, high, narrow curves; saturated and
    partial-volume curves rejected) on the voxel curves, which in an artery are **blood**
    concentrations, and converts the mean curve to plasma with ``hematocrit``. Returns the plasma
    curve and a provenance dict (flat voxel indices within ``mask``, rejection counts).
    """
    from perfnode.perfusion.aif import select_aif

    c, spatial, sel = as_curves(conc, time_axis, mask)
    found = select_aif(c, np.asarray(times_s, dtype=np.float64), n_voxels=n_voxels)
    flat = np.flatnonzero(sel)[found.indices]
    info = {"aif": "measured, automatic selection", "voxels": [np.unravel_index(i, spatial) for i in flat],
            "rejected": dict(found.rejected), "hematocrit": hematocrit}
    return found.curve / (1.0 - hematocrit), info


def semi_quantitative(conc: np.ndarray, times_s: ArrayLike, mask: np.ndarray | None = None,
                      time_axis: int = -1, onset_s: float | np.ndarray | None = None,
                      onset_fraction: float = 0.1) -> FitResult:
    """Model-free maps of concentration (or enhancement) curves.

    ``iauc60_mM_s``: area under the curve from the onset to onset + 60 s; ``ttp_s``: time of the
    peak after the first frame; ``peak_mM``: maximum; ``wash_in_slope_mM_per_s``: steepest rise
    between consecutive frames up to the peak; ``onset_s``: the given onset, or per voxel the last
    frame before the curve first exceeds ``onset_fraction`` of its peak.
    """
    c, spatial, sel = as_curves(conc, time_axis, mask)
    t = np.asarray(times_s, dtype=np.float64).ravel()
    if t.size != c.shape[1]:
        raise ValueError(f"data has {c.shape[1]} time points, times_s has {t.size}")
    finite = np.all(np.isfinite(c), axis=1)
    c = np.where(finite[:, None], c, 0.0)
    n = c.shape[0]
    peak_i = np.argmax(c, axis=1)
    peak = c[np.arange(n), peak_i]
    if onset_s is None:
        above = c >= onset_fraction * peak[:, None]
        first = np.argmax(above, axis=1)
        onset = t[np.maximum(first - 1, 0)]
    else:
        onset = np.broadcast_to(np.asarray(onset_s, dtype=np.float64), spatial).reshape(-1)[sel]
    integral = pk.cumtrapz(c, t)

    def at(time: np.ndarray) -> np.ndarray:
        i = np.clip(np.searchsorted(t, time, side="right") - 1, 0, t.size - 2)
        w = np.clip((time - t[i]) / (t[i + 1] - t[i]), 0.0, 1.0)
        rows = np.arange(n)
        return integral[rows, i] * (1 - w) + integral[rows, i + 1] * w

    iauc = at(onset + 60.0) - at(onset)
    slope = np.diff(c, axis=1) / np.diff(t)
    upto = np.arange(t.size - 1)[None, :] < np.maximum(peak_i, 1)[:, None]
    wash_in = np.max(np.where(upto, slope, -np.inf), axis=1)
    maps = {"iauc60_mM_s": iauc, "ttp_s": t[peak_i] - t[0], "peak_mM": peak,
            "wash_in_slope_mM_per_s": wash_in, "onset_s": onset}
    bad = ~finite | (peak <= 0)
    maps = {k: to_maps(np.where(bad, np.nan, v), spatial, sel, np.float32) for k, v in maps.items()}
    failures = Counter({"non-finite samples": int((~finite).sum()),
                        "no enhancement (peak ≤ 0)": int((finite & (peak <= 0)).sum())})
    return FitResult(maps=maps, units={"iauc60_mM_s": "mM.s", "ttp_s": "s", "peak_mM": "mM",
                                       "wash_in_slope_mM_per_s": "mM/s", "onset_s": "s"},
                     failures=Counter({k: v for k, v in failures.items() if v}),
                     provenance={"model": "semi-quantitative", "onset": "given" if onset_s is not None
                                 else f"first frame ≥ {onset_fraction:g}·peak, minus one",
                                 "integration": "trapezoid, linear interpolation at the limits"})
