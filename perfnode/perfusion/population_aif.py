"""Population arterial input functions (plasma concentration in mM against time in seconds).

- :func:`parker_aif`: Parker et al., MRM 2006;56:993 (doi:10.1002/mrm.21066), the population-average
  blood curve (two Gaussians plus a sigmoid-modulated exponential), converted to plasma with the
  haematocrit and starting at ``t_start_s`` (zero before), as in OSIPI's ``aifs.Parker``.
- :func:`tofts_kermode_aif`: the bi-exponential plasma curve of Tofts & Kermode, MRM 1991;17:357
  (Weinmann et al. 1984 data), dose 0.1 mmol/kg, starting at ``t_start_s``.
"""

from __future__ import annotations

import numpy as np

#: Parker 2006 Table 1 (times in min, A in mM·min, α in mM, β and s in min⁻¹).
PARKER = {"A1": 0.809, "A2": 0.330, "T1": 0.17046, "T2": 0.365, "sigma1": 0.0563, "sigma2": 0.132,
          "alpha": 1.050, "beta": 0.1685, "s": 38.078, "tau": 0.483}
#: Tofts & Kermode 1991: a in kg/l, m in min⁻¹ (for a dose D in mmol/kg).
TOFTS_KERMODE = {"a1": 3.99, "a2": 4.78, "m1": 0.144, "m2": 0.0111}


def parker_blood(t_s: np.ndarray, t_start_s: float = 0.0) -> np.ndarray:
    """Parker population **blood** concentration (mM) at times ``t_s`` (s); zero before ``t_start_s``."""
    p = PARKER
    tm = (np.asarray(t_s, dtype=np.float64) - t_start_s) / 60.0
    g = sum(p[f"A{i}"] / (p[f"sigma{i}"] * np.sqrt(2 * np.pi))
            * np.exp(-((tm - p[f"T{i}"]) ** 2) / (2 * p[f"sigma{i}"] ** 2)) for i in (1, 2))
    with np.errstate(over="ignore"):
        tail = p["alpha"] * np.exp(-p["beta"] * tm) / (1.0 + np.exp(-p["s"] * (tm - p["tau"])))
    return np.where(tm >= 0, g + tail, 0.0)


def parker_aif(t_s: np.ndarray, hematocrit: float = 0.42, t_start_s: float = 0.0) -> np.ndarray:
    """Parker population AIF as **plasma** concentration (mM): blood curve / (1 − Hct)."""
    if not 0 <= hematocrit < 1:
        raise ValueError(f"hematocrit must be in [0, 1), got {hematocrit}")
    return parker_blood(t_s, t_start_s) / (1.0 - hematocrit)


def tofts_kermode_aif(t_s: np.ndarray, dose_mmol_per_kg: float = 0.1, t_start_s: float = 0.0) -> np.ndarray:
    """Tofts–Kermode bi-exponential plasma AIF (mM); an instantaneous bolus at ``t_start_s``."""
    p = TOFTS_KERMODE
    tm = (np.asarray(t_s, dtype=np.float64) - t_start_s) / 60.0
    c = dose_mmol_per_kg * (p["a1"] * np.exp(-p["m1"] * tm) + p["a2"] * np.exp(-p["m2"] * tm))
    return np.where(tm >= 0, c, 0.0)


POPULATION_AIFS = {"parker": parker_aif, "tofts_kermode": tofts_kermode_aif}
