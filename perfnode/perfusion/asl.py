"""Arterial spin labelling CBF: single-PLD white-paper formula and multi-PLD Buxton kinetic model.

Constants (Alsop et al., MRM 2015;73:102, the ISMRM/EU consensus "white paper"): blood–brain
partition coefficient λ = 0.9 ml/g; T1 of arterial blood 1350 ms at 1.5 T and 1650 ms at 3 T;
labelling efficiency α = 0.85 for pCASL and 0.98 for PASL (background suppression losses are not
included: multiply α by the suppression efficiency if the sequence uses it).

Single PLD, with ``ΔM = control − label`` averaged over pairs and ``M0`` the proton-density image::

    pCASL: CBF = 6000·λ·ΔM·exp(PLD/T1b) / (2·α·T1b·M0·(1 − exp(−τ/T1b)))      τ = label duration
    PASL:  CBF = 6000·λ·ΔM·exp(TI/T1b)  / (2·α·TI1·M0)                        TI1 = bolus duration

in ml/100 g/min (6000 converts ml/g/s). Multi-PLD: the Buxton general kinetic model (Buxton et al.,
MRM 1998) with the label staying in blood (T1' = T1b, as recommended by Woods et al., MRM 2024) gives
``ΔM(PLD) = 2·α·(M0/λ)·f·g(PLD; ATT)``; it is linear in f, so CBF and the arterial transit time are
found for all voxels at once by variable projection: for every ATT on a fine grid the best f is a
ratio of dot products, the ATT with the least squared error is kept and refined by a parabola.
Frames alternate label/control in the order given by ``order``.
"""

from __future__ import annotations

from collections import Counter
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from .base import FitResult, as_curves, to_maps

PARTITION_COEFFICIENT_ML_PER_G = 0.9
T1_BLOOD_S: dict[float, float] = {1.5: 1.35, 3.0: 1.65}
LABELING_EFFICIENCY: dict[str, float] = {"pcasl": 0.85, "pasl": 0.98}
Labeling = Literal["pcasl", "pasl"]
Order = Literal["control_label", "label_control"]


def t1_blood_for(field_strength_t: float) -> float:
    """White-paper T1 of arterial blood (s) at 1.5 T or 3 T (± 0.1 T)."""
    for b0, t1 in T1_BLOOD_S.items():
        if abs(field_strength_t - b0) <= 0.1:
            return t1
    raise ValueError(f"(0018,0087) MagneticFieldStrength {field_strength_t:g} T has no consensus T1 of blood "
                     "(1.5 T: 1350 ms, 3 T: 1650 ms); give t1_blood_s explicitly")


def pair_differences(frames: np.ndarray, order: Order = "control_label") -> np.ndarray:
    """``control − label`` of consecutive frame pairs of curves ``(n, 2·k)`` → ``(n, k)``."""
    if frames.shape[-1] % 2:
        raise ValueError(f"ASL series has {frames.shape[-1]} frames: label/control pairs need an even number")
    first, second = frames[..., 0::2], frames[..., 1::2]
    diff: np.ndarray
    if order == "control_label":
        diff = first - second
        return diff
    if order == "label_control":
        diff = second - first
        return diff
    raise ValueError(f"frame order {order!r} is not 'control_label' or 'label_control'")


class _AslBase:
    def __init__(self, labeling: Labeling, field_strength_t: float, t1_blood_s: float | None,
                 labeling_efficiency: float | None, partition_coefficient: float, order: Order,
                 m0_scale: float) -> None:
        if labeling not in LABELING_EFFICIENCY:
            raise ValueError(f"labelling type {labeling!r} is not one of {tuple(LABELING_EFFICIENCY)}")
        self.labeling, self.order = labeling, order
        self.t1b = t1_blood_for(field_strength_t) if t1_blood_s is None else float(t1_blood_s)
        self.alpha = (LABELING_EFFICIENCY[labeling] if labeling_efficiency is None
                      else float(labeling_efficiency))
        self.lam, self.field_strength_t, self.m0_scale = partition_coefficient, field_strength_t, m0_scale

    def _m0_rows(self, m0: np.ndarray | float, spatial: tuple[int, ...], sel: np.ndarray) -> np.ndarray:
        m = np.asarray(m0, dtype=np.float64)
        if m.ndim == 0:
            return np.full(int(sel.sum()), float(m) * self.m0_scale)
        if m.shape != spatial:
            raise ValueError(f"M0 image shape {m.shape} does not match the ASL spatial shape {spatial}")
        rows: NDArray[np.float64] = m.reshape(-1)[sel] * self.m0_scale
        return rows

    def _constants(self) -> dict[str, float | str]:
        return {"labeling": self.labeling, "t1_blood_s": self.t1b, "labeling_efficiency": self.alpha,
                "partition_coefficient_ml_per_g": self.lam, "field_strength_t": self.field_strength_t,
                "m0_scale": self.m0_scale, "frame_order": self.order}


class AslModel(_AslBase):
    """Single-PLD (pCASL) or single-TI (PASL) CBF by the white-paper formula."""

    def __init__(self, labeling: Labeling = "pcasl", *, pld_s: float,
                 labeling_duration_s: float | None = None, bolus_duration_s: float | None = None,
                 field_strength_t: float = 3.0,
                 t1_blood_s: float | None = None, labeling_efficiency: float | None = None,
                 partition_coefficient: float = PARTITION_COEFFICIENT_ML_PER_G,
                 order: Order = "control_label", m0_scale: float = 1.0) -> None:
        super().__init__(labeling, field_strength_t, t1_blood_s, labeling_efficiency, partition_coefficient,
                         order, m0_scale)
        self.pld = float(pld_s)
        if labeling == "pcasl" and not (labeling_duration_s and labeling_duration_s > 0):
            raise ValueError("pCASL needs the label duration τ (labeling_duration_s > 0)")
        if labeling == "pasl" and not (bolus_duration_s and bolus_duration_s > 0):
            raise ValueError("PASL needs the bolus duration TI1 (bolus_duration_s > 0)")
        self.tau, self.ti1 = labeling_duration_s, bolus_duration_s

    def scale(self) -> float:
        """CBF (ml/100 g/min) per unit of ΔM/M0."""
        if self.labeling == "pcasl":
            assert self.tau is not None  # required for pCASL in __init__
            return float(6000.0 * self.lam * np.exp(self.pld / self.t1b)
                         / (2.0 * self.alpha * self.t1b * (1.0 - np.exp(-self.tau / self.t1b))))
        assert self.ti1 is not None  # required for PASL in __init__
        return float(6000.0 * self.lam * np.exp(self.pld / self.t1b) / (2.0 * self.alpha * self.ti1))

    def fit(self, data: np.ndarray, m0: np.ndarray | float, mask: np.ndarray | None = None,
            time_axis: int = -1) -> FitResult:
        """CBF of label/control frames ``data``; ``m0`` is an image of the spatial shape or a scalar."""
        frames, spatial, sel = as_curves(data, time_axis, mask)
        dm = pair_differences(frames, self.order)
        mean = dm.mean(axis=1)
        m0r = self._m0_rows(m0, spatial, sel)
        failures: Counter[str] = Counter()
        ok = np.isfinite(mean) & np.isfinite(m0r) & (m0r > 0)
        failures["M0 not positive or data not finite"] = int((~ok).sum())
        with np.errstate(invalid="ignore", divide="ignore"):
            cbf = np.where(ok, self.scale() * mean / m0r, np.nan)
            # pair-to-pair consistency: mean² / (mean² + var(mean)); 1 = noise-free, 0 = pure noise
            var_mean = dm.var(axis=1, ddof=1) / dm.shape[1] if dm.shape[1] > 1 else np.zeros_like(mean)
            quality = np.where(ok, mean**2 / (mean**2 + var_mean), np.nan)
        prov = {"technique": "ASL", "method": "single-PLD white paper (Alsop 2015)", "pld_s": self.pld,
                "labeling_duration_s": self.tau, "bolus_duration_s": self.ti1, "n_pairs": dm.shape[1],
                **self._constants()}
        maps = {"cbf": cbf, "delta_m": mean}
        return FitResult(maps={k: to_maps(v, spatial, sel) for k, v in maps.items()},
                         units={"cbf": "ml/100g/min", "delta_m": "a.u."},
                         quality=to_maps(quality, spatial, sel),
                         failures=+failures, provenance=prov)


class MultiPldAslModel(_AslBase):
    """Multi-PLD pCASL (or multi-TI PASL): CBF and arterial transit time by the Buxton model."""

    def __init__(self, labeling: Labeling = "pcasl", *, plds_s: np.ndarray, labeling_duration_s: float,
                 field_strength_t: float = 3.0, t1_blood_s: float | None = None,
                 labeling_efficiency: float | None = None,
                 partition_coefficient: float = PARTITION_COEFFICIENT_ML_PER_G,
                 order: Order = "control_label", m0_scale: float = 1.0,
                 att_range_s: tuple[float, float] = (0.1, 3.0), att_step_s: float = 0.01) -> None:
        super().__init__(labeling, field_strength_t, t1_blood_s, labeling_efficiency, partition_coefficient,
                         order, m0_scale)
        self.plds = np.asarray(plds_s, dtype=np.float64)
        if self.plds.ndim != 1 or self.plds.size < 2:
            raise ValueError("multi-PLD fitting needs the PLD (PASL: TI) of every label/control pair")
        if not labeling_duration_s > 0:
            raise ValueError("the label duration τ (PASL: bolus duration TI1) must be > 0 s")
        self.tau = float(labeling_duration_s)
        self.att_grid = np.arange(att_range_s[0], att_range_s[1] + att_step_s / 2, att_step_s)

    def kinetic(self, att: np.ndarray) -> np.ndarray:
        """``g(PLD; ATT)`` (s) such that ``ΔM/M0 = 2·α·f/λ · g``; ``att`` (m,) → (m, n_pld)."""
        a = np.asarray(att, dtype=np.float64)[:, None]
        w, tau, t1 = self.plds[None, :], self.tau, self.t1b
        if self.labeling == "pcasl":
            t = tau + w  # time since the start of labelling
            filling = t1 * np.exp(-a / t1) * (1.0 - np.exp(-np.clip(t - a, 0.0, None) / t1))
            after = t1 * np.exp(-w / t1) * (1.0 - np.exp(-tau / t1))
            return np.where(t < a, 0.0, np.where(w < a, filling, after))
        ti = w
        return np.where(ti < a, 0.0, np.minimum(ti - a, tau) * np.exp(-ti / t1))

    def fit(self, data: np.ndarray, m0: np.ndarray | float, mask: np.ndarray | None = None,
            time_axis: int = -1) -> FitResult:
        """CBF (ml/100 g/min) and ATT (s) of label/control frames, one pair per entry of ``plds_s``."""
        frames, spatial, sel = as_curves(data, time_axis, mask)
        dm = pair_differences(frames, self.order)
        if dm.shape[1] != self.plds.size:
            raise ValueError(f"{dm.shape[1]} label/control pairs but {self.plds.size} PLDs")
        m0r = self._m0_rows(m0, spatial, sel)
        failures: Counter[str] = Counter()
        ok = np.all(np.isfinite(dm), axis=1) & np.isfinite(m0r) & (m0r > 0)
        failures["M0 not positive or data not finite"] = int((~ok).sum())
        with np.errstate(invalid="ignore", divide="ignore"):
            y = np.where(ok[:, None], dm / m0r[:, None], 0.0)  # ΔM/M0 = (2α/λ)·f·g
        g = self.kinetic(self.att_grid)  # (m, p)
        gg = (g * g).sum(axis=1)
        yg = y @ g.T  # (n, m)
        with np.errstate(invalid="ignore", divide="ignore"):
            sse = (y * y).sum(axis=1, keepdims=True) - np.where(gg > 0, yg**2 / gg, 0.0)
        best = np.argmin(sse, axis=1)
        rows = np.arange(y.shape[0])
        # parabolic refinement of the ATT between grid neighbours
        lo, hi = np.clip(best - 1, 0, g.shape[0] - 1), np.clip(best + 1, 0, g.shape[0] - 1)
        s0, s1, s2 = sse[rows, lo], sse[rows, best], sse[rows, hi]
        den = s0 - 2.0 * s1 + s2
        with np.errstate(invalid="ignore", divide="ignore"):
            frac = np.where((den > 0) & (lo != best) & (hi != best), 0.5 * (s0 - s2) / den, 0.0)
        step = self.att_grid[1] - self.att_grid[0] if self.att_grid.size > 1 else 0.0
        att = self.att_grid[best] + np.clip(frac, -1.0, 1.0) * step
        gbest = self.kinetic(att)  # (n, p)
        with np.errstate(invalid="ignore", divide="ignore"):
            f = (y * gbest).sum(axis=1) / (gbest * gbest).sum(axis=1)  # ml/g/s · 2α/λ
            cbf = 6000.0 * f * self.lam / (2.0 * self.alpha)
            resid = ((y - f[:, None] * gbest) ** 2).sum(axis=1)
            total = ((y - y.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
            quality = np.clip(1.0 - resid / total, 0.0, 1.0)
        at_edge = ok & ((best == 0) | (best == self.att_grid.size - 1))
        failures["ATT at the edge of its range"] = int(at_edge.sum())
        good = ok & ~at_edge
        prov = {"technique": "ASL", "method": "multi-PLD Buxton general kinetic model, T1' = T1b, variable "
                "projection over an ATT grid", "plds_s": self.plds.tolist(), "labeling_duration_s": self.tau,
                "att_range_s": (float(self.att_grid[0]), float(self.att_grid[-1])), "att_step_s": step,
                **self._constants()}
        maps = {"cbf": np.where(good, cbf, np.nan), "att_s": np.where(good, att, np.nan)}
        return FitResult(maps={k: to_maps(v, spatial, sel) for k, v in maps.items()},
                         units={"cbf": "ml/100g/min", "att_s": "s"},
                         quality=to_maps(np.where(good, quality, np.nan), spatial, sel),
                         failures=+failures, provenance=prov)
