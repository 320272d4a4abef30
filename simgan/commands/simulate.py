"""`simgan simulate eyes ...`: make a labelled dataset file with a built-in simulator."""

from __future__ import annotations

import argparse
import sys
import time


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "simulate",
        help="make a dataset (.npz or .zip) with a built-in simulator",
        description=(
            "Render labelled images with a built-in simulator. 'eyes': 55x35 grayscale eye crops with "
            "gaze (pitch, yaw in degrees) and keypoints; domain 'synthetic' is a clean render, 'real' "
            "the same kind of scene seen through a camera (noise, blur, texture, uneven light)."
        ),
    )
    parser.add_argument("simulator", help="which simulator: eyes")
    parser.add_argument("--domain", default="synthetic", help="synthetic (default) or real")
    parser.add_argument("--count", type=int, default=1000, help="number of images (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same file")
    parser.add_argument(
        "--gap",
        type=float,
        default=1.0,
        help="strength of the real domain's camera look (0: none, 1: default)",
    )
    parser.add_argument(
        "--out",
        help="dataset file to write: .npz (images and annotations arrays) or .zip (PNGs and "
        "annotations.jsonl, as POST /datasets takes it)",
    )
    parser.add_argument(
        "--grid", help="also write a PNG of 16 synthetic above 16 real images made with this seed and gap"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from simulators import DOMAINS, save_npz, save_zip, simulate
    from simulators.grid import save_grid

    if not args.out and not args.grid:
        print(
            "simgan simulate: give --out FILE.npz or FILE.zip (the dataset), --grid FILE.png (a picture), "
            "or both",
            file=sys.stderr,
        )
        return 2
    if args.out and not str(args.out).endswith((".npz", ".zip")):
        print(f"simgan simulate: --out must name a .npz or .zip file, got {args.out!r}", file=sys.stderr)
        return 2
    if args.domain not in DOMAINS:
        print(
            f"simgan simulate: unknown domain {args.domain!r}; choose one of: {', '.join(DOMAINS)}",
            file=sys.stderr,
        )
        return 2
    try:
        if args.out:
            started = time.perf_counter()
            batch = simulate(args.simulator, args.count, args.domain, args.seed, args.gap)
            save = save_zip if str(args.out).endswith(".zip") else save_npz
            path = save(args.out, batch.images, batch.annotations)
            shape = "x".join(str(d) for d in batch.images.shape[1:])
            print(
                f"wrote {len(batch)} {args.domain} {args.simulator} images ({shape}, seed {args.seed}, "
                f"gap {args.gap:g}) to {path} in {time.perf_counter() - started:.1f} s"
            )
        if args.grid:
            rows = [
                ("synthetic", simulate(args.simulator, 16, "synthetic", args.seed, args.gap).images),
                (
                    f"real (gap {args.gap:g})",
                    simulate(args.simulator, 16, "real", args.seed, args.gap).images,
                ),
            ]
            print(f"wrote {save_grid(args.grid, rows)}")
    except ValueError as exc:
        print(f"simgan simulate: {exc}", file=sys.stderr)
        return 2
    return 0
