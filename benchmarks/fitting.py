"""Fitting benchmark: DSC (from fitting_dsc.py), extended Tofts vs dcmri, IVIM segmented — one run.

Run: ``.venv/bin/python benchmarks/fitting.py`` (``--quick`` for a 32×32×4 volume, ``--no-dsc``).

DCE: 128×128×20 voxels, 75 frames of 4 s. Truth: extended Tofts parameters drawn per voxel
(Ktrans 0.02–0.6 min⁻¹, ve 0.1–0.6, vp 0.005–0.1), Parker AIF (Hct 0.45, bolus at 20 s),
concentration computed on a 0.25 s grid and sampled every 4 s, turned into SPGR signal (TR 5 ms,
FA 15°, T1 1.2 s, r1 4.5 /mM/s) with Gaussian noise of 0.5 % of the baseline signal.
perfnode: signal → concentration → extended Tofts (Murase start + batched LM) on the whole volume.
dcmri: ``dcmri.Tissue(kinetics='HF')`` — the extended Tofts model — trained per curve on the same
signals (the per-curve API; ``TissueArray`` loops over the same fit), on a random subsample,
extrapolated per voxel. Both errors against the truth are printed.

IVIM: 128×128×20 voxels, 10 b-values, bi-exponential truth (D 0.5–2.5e-3, f 0.05–0.35,
D* 0.01–0.1 mm²/s), Rician-free Gaussian noise SD 1 % of S0; segmented fit.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from perfnode.perfusion import pk_models as pk  # noqa: E402
from perfnode.perfusion.dce import DCEModel  # noqa: E402
from perfnode.perfusion.ivim import IVIMModel  # noqa: E402
from perfnode.perfusion.population_aif import parker_aif  # noqa: E402
from perfnode.perfusion.signal import spgr_to_concentration  # noqa: E402
from perfnode.perfusion.t1 import spgr_signal  # noqa: E402

H, TR, FA, T1, R1_RELAX, BOLUS_S = 0.45, 0.005, 15.0, 1.2, 4.5, 20.0
N_T, DT_S, N_BASELINE = 75, 4.0, 5


def _rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 0)


def simulate_dce(n: int, seed: int = 0, noise: float = 0.005) -> tuple[np.ndarray, np.ndarray, dict]:
    """(n, N_T) SPGR signals, the sample times and the true parameters."""
    rng = np.random.default_rng(seed)
    truth = {"ktrans": rng.uniform(0.02, 0.6, n), "ve": rng.uniform(0.1, 0.6, n),
             "vp": rng.uniform(0.005, 0.1, n)}
    t = np.arange(N_T) * DT_S
    step = 16
    fine = np.arange(0, t[-1] + 1e-9, DT_S / step)
    cp = parker_aif(fine, H, BOLUS_S)
    sig = np.empty((n, N_T), np.float32)
    for i in range(0, n, 16384):
        sl = slice(i, i + 16384)
        c = pk.extended_tofts(fine / 60, cp, truth["ktrans"][sl], truth["ktrans"][sl] / truth["ve"][sl],
                              truth["vp"][sl])[:, ::step]
        s = spgr_signal(1.0, 1 / T1 + R1_RELAX * c, np.deg2rad(FA), TR)
        sig[sl] = s + noise * s[:, :1] * rng.standard_normal(s.shape)
    return sig, t, truth


def _errors(kt, ve, vp, truth, idx=slice(None)) -> dict[str, float]:
    def rel(a, b):
        return round(float(np.nanmedian(np.abs(a / b - 1))), 4)
    return {"ktrans_median_abs_rel_error": rel(kt, truth["ktrans"][idx]),
            "ve_median_abs_rel_error": rel(ve, truth["ve"][idx]),
            "vp_median_abs_error": round(float(np.nanmedian(np.abs(vp - truth["vp"][idx]))), 5)}


def bench_dce(shape=(20, 128, 128), n_ref: int = 200, seed: int = 0) -> dict:
    n = int(np.prod(shape))
    sig, t, truth = simulate_dce(n, seed)
    vol = np.moveaxis(sig.reshape(*shape, N_T), -1, 0)  # (t, z, y, x) as a series would arrive
    t0, c0 = time.perf_counter(), time.process_time()
    conc = spgr_to_concentration(vol, TR, FA, T1, R1_RELAX, baseline=N_BASELINE, time_axis=0)
    t_conc = time.perf_counter() - t0
    fit = DCEModel(t, "parker", model="extended_tofts", hematocrit=H, aif_start_s=BOLUS_S).fit(
        conc.concentration_mM)
    t_ours, cpu_ours = time.perf_counter() - t0, time.process_time() - c0
    ours = _errors(fit.ktrans_per_min.ravel(), fit.ve.ravel(), fit.vp.ravel(), truth)
    res = {"voxels": n, "frames": N_T, "perfnode_s": round(t_ours, 2),
           "perfnode_signal_to_conc_s": round(t_conc, 2),
           "perfnode_cpu_s": round(cpu_ours, 2), "goal_s": 30.0,
           "perfnode_per_voxel_us": round(t_ours / n * 1e6, 1),
           "perfnode_cpu_per_voxel_us": round(cpu_ours / n * 1e6, 1),
           "perfnode_failures": int(sum(fit.failures.values())), "perfnode": ours, "peak_rss_mb": _rss_mb()}
    # dcmri on a subsample of the same signals
    try:
        import dcmri
    except ImportError:  # pragma: no cover - dcmri is a bench extra
        res["dcmri"] = "not installed"
        return res
    rng = np.random.default_rng(seed + 1)
    idx = np.sort(rng.choice(n, size=min(n_ref, n), replace=False))
    ca_blood_M = parker_aif(t, H, BOLUS_S) * (1 - H) / 1000.0
    est = np.full((idx.size, 3), np.nan)
    t1, c1 = time.perf_counter(), time.process_time()
    for j, i in enumerate(idx):
        tissue = dcmri.Tissue(kinetics="HF", ca=ca_blood_M, t=t, r1=R1_RELAX * 1000.0, R10=1 / T1,
                              TR=TR, FA=FA, n0=N_BASELINE, H=H)
        tissue.train(t, sig[i].astype(np.float64))
        est[j] = tissue.params("PS", "vi", "vb")
    t_ref = (time.perf_counter() - t1) / idx.size
    cpu_ref = (time.process_time() - c1) / idx.size
    ref = _errors(est[:, 0] * 60.0, est[:, 1], est[:, 2] * (1 - H), truth, idx)
    ours_sub = _errors(fit.ktrans_per_min.ravel()[idx], fit.ve.ravel()[idx], fit.vp.ravel()[idx], truth, idx)
    res.update({"dcmri_version": getattr(dcmri, "__version__", None) or _version("dcmri"),
                "dcmri_subsample": int(idx.size), "dcmri_per_voxel_us": round(t_ref * 1e6, 1),
                "dcmri_cpu_per_voxel_us": round(cpu_ref * 1e6, 1),
                "dcmri_extrapolated_s": round(t_ref * n, 1),
                "speedup_per_voxel": round(t_ref / (t_ours / n), 1),
                "speedup_per_voxel_cpu": round(cpu_ref / (cpu_ours / n), 1), "speedup_goal": 50.0,
                "dcmri": ref, "perfnode_on_subsample": ours_sub})
    return res


def _version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def bench_ivim(shape=(20, 128, 128), seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape))
    b = np.array([0, 10, 20, 40, 80, 150, 250, 400, 600, 800], dtype=float)
    d, f, ds = rng.uniform(5e-4, 2.5e-3, n), rng.uniform(0.05, 0.35, n), rng.uniform(0.01, 0.1, n)
    s = np.empty((n, b.size), np.float32)
    for i in range(0, n, 65536):
        sl = slice(i, i + 65536)
        clean = f[sl, None] * np.exp(-b * ds[sl, None]) + (1 - f[sl, None]) * np.exp(-b * d[sl, None])
        s[sl] = 1000.0 * (clean + 0.01 * rng.standard_normal(clean.shape))
    vol = np.moveaxis(s.reshape(*shape, b.size), -1, 0)
    t0, c0 = time.perf_counter(), time.process_time()
    fit = IVIMModel(b, method="segmented").fit(vol, axis=0)
    t_fit, cpu_fit = time.perf_counter() - t0, time.process_time() - c0

    def rel(a, ref):
        return round(float(np.nanmedian(np.abs(a.ravel() / ref - 1))), 4)
    return {"voxels": n, "bvalues": b.size, "segmented_s": round(t_fit, 2),
            "segmented_cpu_s": round(cpu_fit, 2), "goal_s": 5.0,
            "per_voxel_us": round(t_fit / n * 1e6, 2), "d_median_abs_rel_error": rel(fit.d_mm2_per_s, d),
            "f_median_abs_rel_error": rel(fit.f, f),
            "dstar_median_abs_rel_error": rel(fit.dstar_mm2_per_s, ds),
            "failures": int(sum(fit.failures.values())), "peak_rss_mb": _rss_mb()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="32×32×4 volumes, 50 dcmri curves")
    ap.add_argument("--no-dsc", action="store_true", help="skip the DSC benchmark")
    ap.add_argument("--dcmri-curves", type=int, default=200)
    args = ap.parse_args()
    shape = (4, 32, 32) if args.quick else (20, 128, 128)
    out = {"machine": f"{platform.node()} {platform.machine()} {platform.processor() or ''}".strip(),
           "python": platform.python_version(), "numpy": np.__version__,
           "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
           "load_avg_1min_at_start": round(os.getloadavg()[0], 1)}
    if not args.no_dsc:
        try:
            from benchmarks.fitting_dsc import bench_dsc
        except ImportError as exc:
            out["dsc"] = f"not available: {exc}"
        else:
            out["dsc"] = bench_dsc()
    out["dce_extended_tofts"] = bench_dce(shape, 50 if args.quick else args.dcmri_curves)
    out["ivim_segmented"] = bench_ivim(shape)
    print(json.dumps(out, indent=1))
    dce, ivim = out["dce_extended_tofts"], out["ivim_segmented"]
    print(f"\nextended Tofts {dce['voxels']} voxels × {N_T} frames: {dce['perfnode_s']} s wall, "
          f"{dce['perfnode_cpu_s']} s CPU (goal < 30 s)")
    if isinstance(dce.get("dcmri"), dict):
        print(f"dcmri {dce['dcmri_per_voxel_us']} µs/voxel vs perfnode "
              f"{dce['perfnode_per_voxel_us']} µs/voxel: "
              f"{dce['speedup_per_voxel']}× faster per voxel wall, {dce['speedup_per_voxel_cpu']}× CPU "
              "(goal ≥ 50×)")
        print(f"Ktrans median |rel err| on the same {dce['dcmri_subsample']} curves: perfnode "
              f"{dce['perfnode_on_subsample']['ktrans_median_abs_rel_error']}, dcmri "
              f"{dce['dcmri']['ktrans_median_abs_rel_error']}")
    print(f"IVIM segmented {ivim['voxels']} voxels × {ivim['bvalues']} b-values: "
          f"{ivim['segmented_s']} s wall, "
          f"{ivim['segmented_cpu_s']} s CPU (goal < 5 s)")
    if isinstance(out.get("dsc"), dict):
        print(f"DSC oSVD: {out['dsc']['fit_s']} s wall (goal < 5 s; see fitting_dsc.py for CPU time)")


if __name__ == "__main__":
    main()
