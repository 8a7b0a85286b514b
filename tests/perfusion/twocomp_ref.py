"""Two-compartment (2CXM, 2CUM) reference curves made by numerical ODE integration, independently of
perfnode's convolution code: the OSIPI DCE-DSC-MRI_CodeCollection test design (Manning et al., MRM
2021;86:1888; ``test/DCEmodels/DCEmodels_data.py``: Parker AIF from 10 s, 0.5 s sampling over 300 s, the
same parameter grids and tolerances), regenerated here because the OSIPI 2CXM/2CUM CSV files are not in
the shared reference data.

2CXM: ``vp·dCp/dt = Fp·(Ca − Cp) − PS·(Cp − Ce)``, ``ve·dCe/dt = PS·(Cp − Ce)``, ``C = vp·Cp + ve·Ce``;
2CUM: the same without back-flux (``ve·dCe/dt = PS·Cp``). Fp in ml/100 ml/min, PS in 1/min.
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy.integrate import solve_ivp

from perfnode.perfusion.population_aif import parker_aif

T_S = np.arange(0.25, 300.0, 0.5)  # OSIPI: 0.25 … 299.75 s
AIF_START_S, HCT = 10.0, 0.42
#: OSIPI grids
GRID_2CXM = list(itertools.product([0.02, 0.1], [0.1, 0.2], [5.0, 25.0, 40.0], [0.05, 0.15]))  # vp ve fp ps
GRID_2CUM = list(itertools.product([0.02, 0.05, 0.1], [5.0, 25.0, 40.0], [1e-5, 0.01, 0.025]))  # vp fp ps
#: OSIPI tolerances (atol, rtol): vp 0.0025, ve 0.05, fp 5 ml/100ml/min + 1 %, PS 0.005/min + 1 %
TOL = {"vp": (0.0025, 0.0), "ve": (0.05, 0.0), "fp": (5.0, 0.01), "ps": (0.005, 0.01)}


def aif(t_s: np.ndarray) -> np.ndarray:
    return parker_aif(t_s, hematocrit=HCT, t_start_s=AIF_START_S)


def curve(vp: float, fp: float, ps: float, ve: float | None, delay_s: float = 0.0) -> np.ndarray:
    """Tissue concentration (mM) at :data:`T_S`; ``ve=None`` is the uptake model (2CUM)."""
    f, p = fp / 100.0, ps  # 1/min

    def rhs(t_min: float, y: np.ndarray) -> list[float]:
        ca = float(aif(np.array([t_min * 60.0 - delay_s]))[0])
        cp, ce = y
        back = 0.0 if ve is None else ce
        dcp = (f * (ca - cp) - p * (cp - back)) / vp
        dce = p * (cp - back) / (1.0 if ve is None else ve)
        return [dcp, dce]

    t_min = T_S / 60.0
    sol = solve_ivp(rhs, (0.0, t_min[-1]), [0.0, 0.0], t_eval=t_min, method="LSODA", rtol=1e-9, atol=1e-12,
                    max_step=0.5 / 60.0)
    cp, ce = sol.y
    return vp * cp + (1.0 if ve is None else ve) * ce
