"""DSC and DCE studies on the real vendor layouts of ``tests/data/real-data``: real headers, functional groups
and private data (:mod:`perfnode.phantoms.real_layout`), the phantoms' signal and ground truth.

Lean on purpose: two slices of the template volume (its own per-frame items), its full in-plane matrix.
DSC is the clinical phantom (partial-volume artery, vein, recirculation) at SNR 20, acquired slice by slice
at the template's own slice timing (the phantom sampled when the header says each slice was acquired);
DCE a 3-D acquisition (every slice at the volume's time) at SNR 30 with a variable-flip-angle T1 series
in the same layout and study, as in the synthetic phantoms' tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from perfnode.phantoms import dce, dsc
from perfnode.phantoms.common import add_noise
from perfnode.phantoms.real_layout import slice_offsets, template_shape, write_real_layout
from tests.real_data import series_files

SLICES = 2
#: Every real multi-frame layout (Enhanced MR: one instance per time point, or one instance), and classic.
MULTI_FRAME = ("siemens_xa30_bold_enh", "siemens_xa10_bold_enh", "siemens_xa60_dwi_enh",
               "philips_asl_3dpcasl_enh", "philips_asl_multiphase_pwi_enh", "canon_dwi_enh")
CLASSIC = ("ge_epi_multiphase_classic",)


@dataclass
class Study:
    series: Path  # the perfusion series' folder
    folders: list[Path]  # every series of the study (the perfusion series first)
    truth: dict[str, Any]
    series_uid: str


def dsc_study(name: str, out: Path, seed: int = 1, snr: float = 20.0, nt: int = 40) -> Study:
    """DSC (TE 30 ms, Image Type PERFUSION, gadobutrol) at the template's slice timing."""
    template = series_files(name)
    nz, ny, nx = template_shape(template, SLICES)
    dt = 1.5
    # the template's slice order; its times scaled into the 1.5 s repetition time when its own is longer
    # (the XA60 DWI's slices span 2.7 s)
    scale = min(1.0, 0.9 * dt / max(float(slice_offsets(template).max()), 1e-9))
    offsets = scale * slice_offsets(template, SLICES)
    fine_steps = 10
    fine, truth = dsc.simulate(nz=nz, ny=ny, nx=nx, nt=nt * fine_steps, dt_s=dt / fine_steps, seed=seed,
                               realistic=True)
    at = np.rint((np.arange(nt)[:, None] * dt + offsets[None]) / (dt / fine_steps)).astype(int)
    signal = np.take_along_axis(fine, at[:, :, None, None], axis=0)
    rng = np.random.default_rng(seed)
    signal = add_noise(signal, snr, float(truth["s0"][truth["labels"] > 0].mean()), rng)
    written = write_real_layout(template, signal, np.arange(nt) * dt, out / "dsc", seed=f"{name}/dsc/{seed}",
                                slices=SLICES, protocol=dsc.PROTOCOL, description="DSC perfusion",
                                slice_timing=scale)
    return Study(out / "dsc", [out / "dsc"], truth, written.series_instance_uid)


def dce_study(name: str, out: Path, seed: int = 1, snr: float = 30.0) -> Study:
    """DCE (SPGR TE 1.5 ms, TR 4 ms, 15°) plus a variable-flip-angle series of the same study and layout."""
    template = series_files(name)
    nz, ny, nx = template_shape(template, SLICES)
    signal, truth = dce.simulate(nz=nz, ny=ny, nx=nx, nt=20, dt_s=6.0, snr=snr, seed=seed)
    vfa = truth["vfa_signal"]  # with the same noise
    vfa_out = write_real_layout(template, vfa, np.zeros(len(vfa)), out / "vfa", seed=f"{name}/vfa/{seed}",
                                slices=SLICES, protocol={**dce.PROTOCOL, "contrast": None,
                                                         "technique": "vfa"},
                                description="VFA T1 mapping", flip_deg=list(dce.VFA_FLIP_DEG), same_time=True,
                                slice_timing=0.0)
    assert vfa_out.files
    written = write_real_layout(template, signal, truth["times_s"], out / "dce", seed=f"{name}/dce/{seed}",
                                slices=SLICES, protocol=dce.PROTOCOL, description="DCE perfusion",
                                slice_timing=0.0)
    return Study(out / "dce", [out / "dce", out / "vfa"], truth, written.series_instance_uid)


def region_median(values: np.ndarray, labels: np.ndarray, region: int,
                  keep: np.ndarray | None = None) -> float:
    sel = labels == region if keep is None else (labels == region) & keep
    return float(np.nanmedian(np.asarray(values)[sel]))


def check_dsc(maps: dict[str, np.ndarray], truth: dict[str, Any]) -> dict[str, tuple[float, float]]:
    """Grey/white and grey/lesion ratios of rCBF and rCBV within 15 % of the truth's (the synthetic DSC
    phantoms' tolerance, tests/pipeline/test_pipeline_end_to_end.py); returns the measured ratios."""
    labels, pure = truth["labels"], truth["artery_fraction"] == 0
    measured = {}
    for name, key in (("rcbf", "cbf_ml_per_100g_per_min"), ("rcbv", "cbv_ml_per_100g")):
        got = [region_median(maps[name], labels, 1, pure) / region_median(maps[name], labels, r, pure)
               for r in (2, 3)]
        want = [region_median(truth[key], labels, 1) / region_median(truth[key], labels, r) for r in (2, 3)]
        np.testing.assert_allclose(got, want, rtol=0.15, err_msg=name)
        measured[name] = (got[0], got[1])
    return measured


def check_dce(maps: dict[str, np.ndarray], truth: dict[str, Any]) -> None:
    """Per region: Ktrans within 15 % (+0.005/min), vp within 0.02, ve within 0.1 (the synthetic DCE
    phantoms' tolerances, tests/pipeline/test_fit_series.py)."""
    labels = truth["labels"]
    for region in (1, 2, 3):
        want = {k: region_median(truth[k], labels, region) for k in ("ktrans_per_min", "vp", "ve")}
        ktrans = region_median(maps["ktrans"], labels, region)
        assert ktrans == pytest_approx(want["ktrans_per_min"], 0.15, 0.005)
        assert region_median(maps["vp"], labels, region) == pytest_approx(want["vp"], 0, 0.02)
        assert region_median(maps["ve"], labels, region) == pytest_approx(want["ve"], 0, 0.1)


def pytest_approx(value: float, rel: float, abs_: float) -> Any:
    import pytest

    return pytest.approx(value, rel=rel, abs=abs_)
