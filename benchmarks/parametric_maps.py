"""Map encoding benchmark: perfnode's Parametric Map writer vs plain highdicom, one run.

Run: ``.venv/bin/python benchmarks/parametric_maps.py`` (``--quick`` for 64×64×10×30, ``--maps N``).

Source: a classic MR DSC series of 128×128 pixels, 20 slices × 60 time points (1200 instances,
headers only), scrambled arrival order. Both writers make float32 Parametric Maps with the same
geometry, Real World Value Mapping and per-frame references to every source image at the slice
(all time points), and the bytes are encoded with pydicom (``save_as`` into memory).
perfnode: :func:`perfnode.dicom.parametric_map.build_parametric_maps` (matches source frames to
slices once per analysis, then reuses the references for every map).
highdicom: ``highdicom.pm.ParametricMap(source_images=<all 1200>, ...)`` per map, which matches
the source images to the planes itself, once per map.
Also perfnode with ``reference_all_time_points=False`` ("perfnode 1t": one reference per frame).
Printed: seconds to build and to encode, for each, and the ratio highdicom / perfnode.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from pathlib import Path

import highdicom as hd
import numpy as np
from pydicom.sr.codedict import codes

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from perfnode.dicom.codes import QUANTITIES  # noqa: E402
from perfnode.dicom.parametric_map import MapGeometry, build_parametric_maps  # noqa: E402
from tests.dicom.test_parametric_map import classic_series  # noqa: E402


def highdicom_maps(src, geom: MapGeometry, maps: dict[str, np.ndarray]) -> list:
    out = []
    orientation = hd.PlaneOrientationSequence("PATIENT", list(geom.orientation))
    positions = [hd.PlanePositionSequence("PATIENT", list(p)) for p in geom.positions]
    measures = hd.PixelMeasuresSequence(list(geom.pixel_spacing), geom.slice_thickness)
    series = hd.UID()
    for i, (key, arr) in enumerate(maps.items(), start=1):
        q = QUANTITIES[key]
        finite = arr[np.isfinite(arr)]
        rwvm = hd.pm.RealWorldValueMapping(
            lut_label=q.display, lut_explanation=q.code.meaning, unit=q.unit,
            value_range=(float(finite.min()), float(finite.max())), slope=1.0, intercept=0.0,
            quantity_definition=q.code)
        out.append(hd.pm.ParametricMap(
            source_images=src, pixel_array=arr, series_instance_uid=series, series_number=1000,
            sop_instance_uid=hd.UID(), instance_number=i, manufacturer="bench",
            manufacturer_model_name="bench",
            software_versions="1", device_serial_number="1", contains_recognizable_visual_features=False,
            real_world_value_mappings=[rwvm],
            voi_lut_transformations=[hd.VOILUTTransformation(window_center=50.0, window_width=100.0)],
            plane_orientation=orientation, plane_positions=positions, pixel_measures=measures,
            derivation=codes.DCM.UnspecifiedMethodOfCalculation))
    return out


class Clock:
    """Wall and CPU seconds of a block (the machine may be shared: CPU time is the fair figure)."""

    def __enter__(self) -> Clock:
        self.w0, self.c0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall, self.cpu = time.perf_counter() - self.w0, time.process_time() - self.c0

    def __str__(self) -> str:
        return f"{self.wall:6.2f} ({self.cpu:5.2f})"


def encode(objs) -> tuple[Clock, int]:
    size = 0
    with Clock() as clock:
        for ds in objs:
            buf = io.BytesIO()
            ds.save_as(buf, enforce_file_format=True)
            size += buf.tell()
    return clock, size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--maps", type=int, default=5)
    args = ap.parse_args()
    nz, nt, n = (10, 30, 64) if args.quick else (20, 60, 128)
    src = classic_series(nz=nz, nt=nt, rows=n, cols=n)
    for ds in src:
        del ds.PixelData
    geom = MapGeometry.from_datasets(src)
    rng = np.random.default_rng(0)
    keys = ["cbf", "cbv", "mtt", "tmax", "ttp", "quality", "rcbv", "rcbf"][: args.maps]
    maps = {k: rng.uniform(0.0, 100.0, geom.shape).astype(np.float32) for k in keys}
    print(f"source: {nt} time points x {nz} slices of {n}x{n} = {len(src)} classic MR instances; "
          f"{len(maps)} maps")

    with Clock() as t_ours:
        ours = build_parametric_maps(src, maps, uid_seed="bench", geometry=geom)
    e_ours, s_ours = encode(ours)
    with Clock() as t_lean:
        lean = build_parametric_maps(src, maps, uid_seed="bench", geometry=geom,
                                     reference_all_time_points=False)
    e_lean, s_lean = encode(lean)
    with Clock() as t_theirs:
        theirs = highdicom_maps(src, geom, maps)
    e_theirs, s_theirs = encode(theirs)
    refs = sum(len(f.DerivationImageSequence[0].SourceImageSequence)
               for f in theirs[0].PerFrameFunctionalGroupsSequence)
    refs_ours = sum(len(f.DerivationImageSequence[0].SourceImageSequence)
                    for f in ours[0].PerFrameFunctionalGroupsSequence)
    print(f"load average {os.getloadavg()[0]:.1f}; seconds wall (CPU)")
    print(f"{'':12s}{'build':>15s}{'encode':>15s}{'MB':>7s}{'frame refs/map':>16s}")
    print(f"{'perfnode':12s}{t_ours!s:>15s}{e_ours!s:>15s}{s_ours / 1e6:7.1f}{refs_ours:16d}")
    print(f"{'perfnode 1t':12s}{t_lean!s:>15s}{e_lean!s:>15s}{s_lean / 1e6:7.1f}{len(geom.positions):16d}")
    print(f"{'highdicom':12s}{t_theirs!s:>15s}{e_theirs!s:>15s}{s_theirs / 1e6:7.1f}{refs:16d}")
    print(f"ratio highdicom/perfnode, build + encode: wall "
          f"{(t_theirs.wall + e_theirs.wall) / (t_ours.wall + e_ours.wall):.1f}x, CPU "
          f"{(t_theirs.cpu + e_theirs.cpu) / (t_ours.cpu + e_ours.cpu):.1f}x")

if __name__ == "__main__":
    main()
