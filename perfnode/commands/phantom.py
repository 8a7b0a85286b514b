"""``perfnode phantom TECHNIQUE --shape SHAPE --out DIR``: digital reference objects with ground truth."""

from __future__ import annotations

import argparse
import sys
import uuid

from perfnode.phantoms import RULES, SHAPES, TECHNIQUES


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "phantom",
        help="write a perfusion digital reference object (valid or broken)",
        description="Write IHE PERF objects with known ground truth (truth.json, truth.npz). "
        "Broken variants: " + ", ".join(RULES) + ".",
    )
    p.add_argument("technique", choices=TECHNIQUES)
    p.add_argument(
        "--shape",
        choices=SHAPES,
        default="single",
        help="one Enhanced instance, a concatenation, one instance per time point, or classic images",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (one sub-folder per series)")
    p.add_argument(
        "--break",
        dest="break_rule",
        choices=sorted(RULES),
        metavar="RULE",
        help="make exactly one defect: " + ", ".join(RULES),
    )
    p.add_argument("--seed", type=int, default=None,
                   help="random seed (noise, shuffling, defect position); given, it also fixes the UIDs "
                   "(the same seed writes the same UIDs); without it the noise is seed 0's and the UIDs "
                   "are new on every run")
    p.add_argument("--snr", type=float, default=None,
                   help="signal-to-noise ratio (default: no noise): MR, the mean tissue signal of the first "
                   "image over the noise SD (ASL: 1 %% of M0 over it); CT, 350 HU over it")
    p.add_argument("--size", type=int, nargs=2, default=(16, 16), metavar=("X", "Y"), help="matrix (16 16)")
    p.add_argument("--slices", type=int, default=4, help="slices (4)")
    p.add_argument("--times", type=int, default=20, help="time points (20; ASL: pairs = times/2)")
    p.add_argument("--parts", type=int, default=3, help="parts of a concatenation (3)")
    p.add_argument("--realistic", action="store_true",
                   help="DSC/CT perfusion: partial-volume arteries, a vein, a later recirculating bolus, "
                   "CT: an ischaemic core inside a penumbra (what clinical data look like)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from perfnode.phantoms import Size, make

    size = Size(nx=args.size[0], ny=args.size[1], nz=args.slices, nt=args.times)
    # Without --seed, every run gets its own UIDs: a second phantom (another size, another SNR) must
    # not reuse the first one's SOP Instance UIDs (an archive would refuse them as 0x0111 duplicates).
    salt = "" if args.seed is not None else uuid.uuid4().hex
    try:
        phantom, files = make(
            args.technique, args.shape, args.out, args.break_rule, args.seed or 0, args.snr, size, args.parts,
            realistic=args.realistic, uid_salt=salt,
        )
    except ValueError as exc:
        print(f"perfnode phantom: {exc}", file=sys.stderr)
        return 2
    for s in phantom.image_sets:
        print(
            f"series {s.series_number} {s.description!r}: {s.modality}, e×t×z×y×x = "
            f"{'×'.join(map(str, s.shape))}"
        )
    print(f"wrote {len(files)} file(s) and truth.json/truth.npz to {args.out}")
    return 0
