"""VFA T1 mapping against the OSIPI T1 reference sets (R1 atol 0.05 s⁻¹, rtol 0.05; t1_data.py)."""

from __future__ import annotations

import numpy as np
import pytest

from perfnode.perfusion.t1 import VFAModel
from tests.perfusion.refdata import arr, cases

ATOL, RTOL = 0.05, 0.05
XFAIL_LINEAR = {"Pat5_voxel5_prostaat"}  # OSIPI marks it xfail for the linear and two-angle methods


def _reference(name: str, row: dict) -> tuple[np.ndarray, float, np.ndarray, float]:
    """Flip angles (deg), TR (s), signals, reference R1 (s⁻¹) converted as the OSIPI loader does."""
    fa, tr, s = arr(row["FA"]), arr(row["TR"])[0], arr(row["s"])
    if name == "brain":
        r1 = float(row["R1"])
    elif name == "quiba":
        r1 = float(row["R1"]) * 1000.0          # stored in ms⁻¹
    else:
        tr, r1 = tr / 1000.0, 1000.0 / float(row["T1 nonlinear"])  # TR and T1 stored in ms
    return fa, tr, s, r1


def _params():
    out = []
    for name in ("brain", "quiba", "prostate"):
        for method in ("nonlinear", "linear", "two_angle"):
            for p in cases(f"t1/t1_{name}_data.csv"):
                row = p.values[0]
                marks = list(p.marks)
                if row is not None and method != "nonlinear" and row["label"] in XFAIL_LINEAR:
                    marks.append(pytest.mark.xfail(strict=True, reason="OSIPI xfail for linear VFA fits"))
                out.append(pytest.param(name, method, row, id=f"{name}-{method}-{p.id}", marks=marks))
    return out


@pytest.mark.parametrize(("name", "method", "row"), _params())
def test_vfa_r1_matches_reference(name, method, row):
    fa, tr, s, r1_ref = _reference(name, row)
    fit = VFAModel(fa, tr, method=method).fit(s)
    np.testing.assert_allclose(fit.r1_per_s, r1_ref, atol=ATOL, rtol=RTOL)
    assert fit.t1_s == pytest.approx(1.0 / fit.r1_per_s)


@pytest.mark.parametrize("row", cases("t1/t1_prostate_data.csv"))
def test_vfa_b1_corrected_matches_prostate_reference(row):
    """Angles scaled by the B1 map (percent of nominal) reproduce the in-house B1-corrected fit."""
    fa, tr, s, _ = _reference("prostate", row)
    fit = VFAModel(fa, tr, method="nonlinear").fit(s, b1=float(row["B1"]) / 100.0)
    np.testing.assert_allclose(fit.r1_per_s, 1000.0 / float(row["T1 nonlinear B1cor"]), atol=ATOL, rtol=RTOL)
    assert fit.provenance["b1_corrected"] is True


def test_vfa_whole_set_in_one_call_matches_per_row():
    """All brain voxels fitted as one (n, angles) array give the same R1 as the reference per row."""
    rows = [p.values[0] for p in cases("t1/t1_brain_data.csv")]
    s = np.stack([arr(r["s"]) for r in rows])
    fit = VFAModel(arr(rows[0]["FA"]), arr(rows[0]["TR"])[0]).fit(s.reshape(4, 19, 3))
    ref = np.array([float(r["R1"]) for r in rows]).reshape(4, 19)
    np.testing.assert_allclose(fit.r1_per_s, ref, rtol=1e-3)  # README: non-linear fit within 3e-5
    assert not fit.failures
    assert np.all(fit.quality > 0.9)
