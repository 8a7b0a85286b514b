"""How a map was made, written into the map object itself and read back.

Three places, all in the object (documented in the conformance statement, "Parametric Maps"):

* **Derivation Description (0008,2111) ST** — one-line human summary (software, technique, model,
  method, AIF, baseline, constants, QC count), at most 1024 characters.
* **Image Comments (0020,4000) LT** — the full provenance as ``key: value`` lines, one QC finding
  per line, for a person reading ``dcmdump`` output (at most 10240 characters).
* **Private block "PERFNODE 1.0" in group 0071** — (0071,xx10) UT: the full provenance as JSON
  (machine-readable, the source of truth for :func:`read_provenance`); (0071,xx11) LO: its schema
  name ``perfnode-provenance/1``.

The software itself is also named in the standard places: Manufacturer, Manufacturer's Model Name,
Software Versions and a Contributing Equipment Sequence item (purpose DCM 109102 "Processing
Equipment") whose Contribution Description repeats the one-line summary.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

import perfnode
from perfnode.dicom.findings import Finding

PRIVATE_GROUP = 0x0071
PRIVATE_CREATOR = "PERFNODE 1.0"
JSON_ELEMENT = 0x10
SCHEMA_ELEMENT = 0x11
SCHEMA = "perfnode-provenance/1"

_ST_MAX = 1024
#: Top-level keys the one-line summary lists as constants when there is no "constants" mapping.
_CONSTANT_KEYS = {
    "hct",
    "hematocrit",
    "hct_large",
    "hct_small",
    "kh",
    "rho",
    "rho_g_per_ml",
    "density",
    "lambda",
    "lambda_ml_per_g",
    "blood_brain_partition",
    "t1_blood_s",
    "alpha",
    "labelling_efficiency",
    "labeling_efficiency",
    "r1_per_mM_per_s",
    "relaxivity",
    "te_s",
    "tr_s",
    "flip_deg",
    "pld_s",
    "label_duration_s",
}
_LT_MAX = 10240


def _plain(obj: Any) -> Any:
    """JSON-able form of numpy values, enums, dataclasses, findings, sets and tuples."""
    if isinstance(obj, Finding):
        return obj.to_dict()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {k: _plain(v) for k, v in dataclasses.asdict(obj).items()}
    if isinstance(obj, enum.Enum):
        return _plain(obj.value)
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, np.ndarray):
        return _plain(obj.tolist())
    if isinstance(obj, np.generic):
        return _plain(obj.item())
    if isinstance(obj, float):
        return obj if np.isfinite(obj) else None
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [_plain(v) for v in obj]
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    return str(obj)


def make_provenance(
    fit_provenance: Mapping[str, Any] | None = None,
    *,
    findings: Iterable[Finding | Mapping[str, Any]] = (),
    **fields: Any,
) -> dict[str, Any]:
    """The provenance record for one analysis: software, the fit's own record, extra fields, QC.

    ``fit_provenance`` is :attr:`perfnode.perfusion.base.FitResult.provenance` (technique, model,
    method and parameters, AIF with curve and voxel locations, baseline frames, constants ...);
    ``fields`` add to or override it; ``findings`` are the QC findings of the analysed series.
    """
    record: dict[str, Any] = {
        "schema": SCHEMA,
        "software": {"name": perfnode.SOFTWARE_NAME, "version": perfnode.__version__},
    }
    record.update(_plain(dict(fit_provenance or {})))
    record.update(_plain(fields))
    record["qc_findings"] = [_plain(f) for f in findings]
    return record


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list):
        if value and all(isinstance(v, (int, float)) or v is None for v in value):
            return "[" + ", ".join("nan" if v is None else _fmt(v) for v in value) + "]"
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _flatten(prefix: str, value: Any) -> Iterable[tuple[str, Any]]:
    if isinstance(value, Mapping):
        for k, v in value.items():
            yield from _flatten(f"{prefix}.{k}" if prefix else str(k), v)
    else:
        yield prefix, value


def summary(record: Mapping[str, Any]) -> str:
    """One line for a person: what made this map, how, and what QC said."""
    sw = record.get("software", {})
    parts = [f"{sw.get('name', perfnode.SOFTWARE_NAME)} {sw.get('version', '')}".strip()]
    for key in ("technique", "model", "method", "deconvolution"):
        if record.get(key):
            parts.append(f"{key} {_fmt(record[key])}")
    aif = record.get("aif")
    if isinstance(aif, Mapping):  # nested {"method", "curve", "voxels", ...}
        method, voxels = aif.get("method") or aif.get("source"), aif.get("voxels")
    else:  # flat keys, as the perfusion models write them
        method = aif if isinstance(aif, str) else record.get("aif_source") or record.get("aif_method")
        voxels = record.get("aif_voxels")
    if method or voxels:
        n = len(voxels) if isinstance(voxels, list) else 0
        parts.append(f"AIF {method or '?'}" + (f" ({n} voxels)" if n else ""))
    if record.get("baseline_frames") is not None:
        parts.append(f"baseline frames {_fmt(record['baseline_frames'])}")
    consts = record.get("constants")
    if not isinstance(consts, Mapping):
        consts = {
            k: v
            for k, v in record.items()
            if k in _CONSTANT_KEYS and isinstance(v, (int, float)) and not isinstance(v, bool)
        }
    if consts:
        parts.append("constants " + ", ".join(f"{k}={_fmt(v)}" for k, v in consts.items()))
    qc = record.get("qc_findings") or []
    n_err = sum(1 for f in qc if isinstance(f, Mapping) and f.get("severity") == "error")
    parts.append(f"QC {len(qc)} findings ({n_err} errors)")
    text = "; ".join(parts)
    return text if len(text) <= _ST_MAX else text[: _ST_MAX - 3] + "..."


def human_text(record: Mapping[str, Any]) -> str:
    """All of the record as ``key: value`` lines, QC findings one per line (fits in LT)."""
    lines: list[str] = []
    for key, value in record.items():
        if key == "qc_findings":
            continue
        lines.extend(f"{k}: {_fmt(v)}" for k, v in _flatten(key, value))
    for f in record.get("qc_findings") or []:
        if isinstance(f, Mapping):
            loc = f" [{f['where']}]" if f.get("where") else ""
            lines.append(
                f"QC {str(f.get('severity', '')).upper()}: {f.get('tag', '')} {f.get('keyword', '')}"
                f"{loc}: found {f.get('found', '')}; expected {f.get('expected', '')} "
                f"({f.get('rule', '')})"
            )
    text = "\n".join(lines)
    if len(text) > _LT_MAX:
        cut = "\n... (truncated; full record in (0071,xx10) PERFNODE 1.0)"
        text = text[: _LT_MAX - len(cut)] + cut
    return text


def write_provenance(ds: Dataset, record: Mapping[str, Any]) -> None:
    """Put ``record`` into ``ds`` (human summary, human full text, machine JSON).

    The text holds units and symbols outside Latin-1 (ΔR2*, ≥, mm²/s), so the object is UTF-8.
    """
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.DerivationDescription = summary(record)
    ds.ImageComments = human_text(record)
    block = ds.private_block(PRIVATE_GROUP, PRIVATE_CREATOR, create=True)
    block.add_new(JSON_ELEMENT, "UT", json.dumps(_plain(record), sort_keys=True, separators=(",", ":")))
    block.add_new(SCHEMA_ELEMENT, "LO", SCHEMA)


def read_provenance(ds: Dataset) -> dict[str, Any]:
    """The provenance record perfnode wrote into ``ds``.

    Raises ``KeyError`` naming the private block when the object carries none.
    """
    try:
        block = ds.private_block(PRIVATE_GROUP, PRIVATE_CREATOR)
        text = block[JSON_ELEMENT].value
    except KeyError:
        raise KeyError(
            f"no perfnode provenance: private creator {PRIVATE_CREATOR!r} in group "
            f"{PRIVATE_GROUP:04X} with element (0071,xx10) UT is absent"
        ) from None
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    record: dict[str, Any] = json.loads(text)
    return record
