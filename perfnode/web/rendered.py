"""Rendered frames (PS3.18 10.4.1.1.3 / 8.3.5): PNG or JPEG with window/level, and a colour LUT for
Parametric Maps.

Stored values → real values (Rescale, or the Real World Value Mapping of a Parametric Map) → window
(``window=center,width[,function]``, else the object's VOI, else the 1st–99th percentile of the
frame) → grey, or a colour map (``colormap=NAME``, a perfnode extension; Parametric Maps default to
``turbo``, the colouring of :mod:`perfnode.dicom.colour`) → ``viewport=w,h`` → encoded by Pillow.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.pixels import pixel_array

from perfnode.web.errors import BadRequest, NotAcceptable
from perfnode.web.media import MediaRange

PARAMETRIC_MAP = "1.2.840.10008.5.1.4.1.1.30"
RENDERED_TYPES = ("image/jpeg", "image/png")


@dataclass(frozen=True)
class RenderParams:
    window: tuple[float, float, str] | None = None
    viewport: tuple[int, int] | None = None
    quality: int = 90
    colormap: str | None = None

    @classmethod
    def parse(cls, query: dict[str, str]) -> RenderParams:
        window = viewport = None
        if "window" in query:
            parts = query["window"].split(",")
            try:
                c, w = float(parts[0]), float(parts[1])
            except (ValueError, IndexError):
                raise BadRequest(
                    f"window={query['window']!r}: expected center,width[,function] (PS3.18 8.3.5.1.4)"
                ) from None
            fn = parts[2].strip().lower() if len(parts) > 2 else "linear"
            if fn not in ("linear", "linear_exact", "sigmoid") or w <= 0:
                raise BadRequest(
                    f"window={query['window']!r}: width > 0 and function linear, linear_exact or "
                    "sigmoid (PS3.18 8.3.5.1.4)"
                )
            window = (c, w, fn)
        if "viewport" in query:
            try:
                vw, vh = (int(x) for x in query["viewport"].split(",")[:2])
            except ValueError:
                raise BadRequest(
                    f"viewport={query['viewport']!r}: expected width,height (PS3.18 8.3.5.1.3)"
                ) from None
            if not (0 < vw <= 4096 and 0 < vh <= 4096):
                raise BadRequest("viewport: width and height 1–4096")
            viewport = (vw, vh)
        try:
            quality = int(query.get("quality", 90))
        except ValueError:
            raise BadRequest("quality: an integer 1–100 (PS3.18 8.3.5.1.2)") from None
        if not 1 <= quality <= 100:
            raise BadRequest("quality: an integer 1–100 (PS3.18 8.3.5.1.2)")
        cmap = query.get("colormap")
        if cmap is not None:
            import matplotlib as mpl

            if cmap not in mpl.colormaps and cmap != "gray":
                raise BadRequest(
                    f"colormap={cmap!r}: not a known colour map (e.g. turbo, viridis, hot, gray)"
                )
        return cls(window, viewport, quality, cmap)


def choose_type(ranges: list[MediaRange]) -> str:
    """The rendered media type: the client's first acceptable of JPEG and PNG (JPEG for ``*/*``)."""
    for r in ranges:
        for t in RENDERED_TYPES:
            if r.type == t:
                return t
        if r.matches("image/jpeg"):
            return "image/jpeg"
    raise NotAcceptable(
        "rendered resources are image/jpeg or image/png (PS3.18 8.7.4); the request accepts "
        + ", ".join(r.type for r in ranges)
    )


def _group_item(ds: Dataset, index: int, seq: str) -> Dataset | None:
    """``seq``'s item for frame ``index``: per-frame first, then shared functional groups."""
    for groups, i in (("PerFrameFunctionalGroupsSequence", index), ("SharedFunctionalGroupsSequence", 0)):
        items = ds.get(groups)
        if items is not None and len(items) > i and seq in items[i]:
            inner = getattr(items[i], seq)
            if len(inner):
                return inner[0]
    return None


def real_values(ds: Dataset, stored: np.ndarray, index: int) -> np.ndarray:
    """Stored values → real-world values: RWVM (Parametric Maps), else Rescale Slope/Intercept."""
    v = stored.astype(np.float64)
    rwvm = _group_item(ds, index, "RealWorldValueMappingSequence")
    if rwvm is None and "RealWorldValueMappingSequence" in ds and len(ds.RealWorldValueMappingSequence):
        rwvm = ds.RealWorldValueMappingSequence[0]
    if rwvm is not None and "RealWorldValueSlope" in rwvm:
        return v * float(rwvm.RealWorldValueSlope) + float(rwvm.get("RealWorldValueIntercept", 0) or 0)
    pvt = _group_item(ds, index, "PixelValueTransformationSequence") or ds
    slope = float(pvt.get("RescaleSlope", 1) or 1)
    intercept = float(pvt.get("RescaleIntercept", 0) or 0)
    return v * slope + intercept


def _default_window(ds: Dataset, index: int, values: np.ndarray) -> tuple[float, float, str]:
    voi = _group_item(ds, index, "FrameVOILUTSequence") or ds
    if "WindowCenter" in voi and "WindowWidth" in voi:
        c, w = voi.WindowCenter, voi.WindowWidth
        c = float(c[0] if isinstance(c, list | tuple) or type(c).__name__ == "MultiValue" else c)
        w = float(w[0] if isinstance(w, list | tuple) or type(w).__name__ == "MultiValue" else w)
        if w > 0:
            return c, w, "linear"
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return 0.0, 1.0, "linear"
    lo, hi = np.percentile(finite, [1, 99])
    if hi <= lo:
        hi = lo + 1.0
    return (lo + hi) / 2, hi - lo, "linear_exact"


def windowed(values: np.ndarray, window: tuple[float, float, str]) -> np.ndarray:
    """0–1 after the VOI function of PS3.3 C.11.2.1.2."""
    c, w, fn = window
    if fn == "sigmoid":
        return 1.0 / (1.0 + np.exp(-4.0 * (values - c) / w))
    if fn == "linear_exact":
        return np.clip((values - (c - w / 2)) / w, 0.0, 1.0)
    return np.clip(((values - (c - 0.5)) / (w - 1 if w > 1 else 1)) + 0.5, 0.0, 1.0)


def render(path: Path, ds: Dataset, index: int, params: RenderParams, media_type: str) -> bytes:
    """Frame ``index`` (0-based) of a stored instance, rendered."""
    stored = pixel_array(path, index=index)
    if stored.ndim == 3 and stored.shape[-1] == 3:  # colour images: as they are
        img = Image.fromarray(stored.astype(np.uint8), "RGB")
    else:
        values = real_values(ds, stored, index)
        window = params.window or _default_window(ds, index, values)
        unit = np.nan_to_num(windowed(values, window), nan=0.0)
        if str(ds.get("PhotometricInterpretation", "")) == "MONOCHROME1":
            unit = 1.0 - unit
        cmap = params.colormap or ("turbo" if str(ds.get("SOPClassUID", "")) == PARAMETRIC_MAP else "gray")
        if cmap == "gray":
            img = Image.fromarray((unit * 255 + 0.5).astype(np.uint8), "L")
        else:
            import matplotlib as mpl

            rgb = (mpl.colormaps[cmap](unit)[..., :3] * 255 + 0.5).astype(np.uint8)
            img = Image.fromarray(rgb, "RGB")
    if params.viewport:
        scale = min(params.viewport[0] / img.width, params.viewport[1] / img.height)
        size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
        img = img.resize(size, Image.Resampling.BILINEAR if scale < 1 else Image.Resampling.NEAREST)
    buf = io.BytesIO()
    if media_type == "image/png":
        img.save(buf, "PNG")
    else:
        img.convert("RGB" if img.mode == "RGB" else "L").save(buf, "JPEG", quality=params.quality)
    return buf.getvalue()
