"""`simgan bench quality --suite`: the product's defaults judged on a suite of sim-to-real pairs.

Each pair (simulators/suite.py) gives labeled synthetic images, unlabeled real ones for training
and labeled real ones used only for scoring. Per pair and seed: train with the defaults (nothing set
per pair but the seed and the run length), publish, evaluate the published ONNX model
(trainer/evaluate.py), and for every scored checkpoint also measure its downstream error, so the
report can say how well the label-free selection criterion ranks checkpoints by usefulness.
"""

from __future__ import annotations

import math
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from simgan.benchmarks.ranking import VALIDATORS, checkpoint_ranking
from simgan.benchmarks.stats import cell, spread

SUITE_CONFIG = {
    "steps": "300",
    "pretrain_refiner_steps": "50",
    "pretrain_discriminator_steps": "50",
    "checkpoint_every": "100",
    "device": "cpu",
}
"""Run length of a suite run on a CPU; every other key is the TrainConfig default, for every pair."""

TARGETS = {"gap_closed_median": 0.5, "gap_closed_worst": 0.25, "label_consistency": 0.95}
EYE_REALISM_TARGET = 0.75


@dataclass(frozen=True)
class SuiteRun:
    """What one run needs: the pair, the seed, image counts, training overrides, evaluation length."""

    pair: str
    seed: int
    counts: tuple[int, int, int]  # synthetic, real (training), real held-out (scoring)
    overrides: dict[str, str]
    task_steps: int
    threads: int
    quick: bool  # --quick: single task models of task_steps, whatever the pair would need for its figures
    pictures: Path | None  # where to copy this run's sample grid, or None


def run(job: SuiteRun) -> dict[str, Any]:
    """Make the data, train, publish, evaluate; the run's figures."""
    import torch

    from core.layout import SAMPLES_NAME
    from core.train_config import TrainConfig
    from models import Registry
    from simulators.suite import PAIRS, make_split
    from trainer.checkpoint import load_checkpoint
    from trainer.evaluate import evaluate
    from trainer.export import publish_checkpoint
    from trainer.selection import SELECTION_BUDGET, build_selector
    from trainer.task_models import TaskBudget
    from trainer.training import train

    if job.threads:
        torch.set_num_threads(job.threads)
    pair = PAIRS[job.pair]
    n_syn, n_real, n_held = job.counts
    synthetic = make_split(job.pair, "synthetic", n_syn, job.seed)
    real = make_split(job.pair, "real", n_real, job.seed).images  # its labels are never used
    heldout = make_split(job.pair, "real_heldout", n_held, job.seed)
    config = TrainConfig.from_overrides({**job.overrides, "seed": str(job.seed)})
    selector = build_selector(
        synthetic.images,
        synthetic.annotations,
        real,
        targets=pair.targets,
        seed=job.seed,
        keep_candidates=True,
        # --quick only checks that every part runs: half the selection's training per checkpoint.
        budget=replace(SELECTION_BUDGET, steps=100) if job.quick else SELECTION_BUDGET,
    )
    assert selector is not None
    with tempfile.TemporaryDirectory(prefix="simgan-suite-") as tmp:
        started = time.perf_counter()
        result = train(config, synthetic.images, real, workdir=Path(tmp) / "run", selector=selector)
        registry = Registry(Path(tmp) / "models")
        card = publish_checkpoint(result.checkpoint, registry)
        train_seconds = time.perf_counter() - started
        # A pair may need longer task models to read its real side at all (horizon64's photographs).
        budget = (
            TaskBudget(steps=job.task_steps, members=1)
            if job.quick
            else TaskBudget(steps=max(job.task_steps, pair.task_steps))
        )
        metrics = evaluate(
            card.version,
            synthetic,
            real,
            heldout,
            seed=job.seed,
            registry=registry,
            targets=list(pair.targets),
            task=pair.kind,
            budget=budget,
        )
        if job.pictures is not None:
            job.pictures.mkdir(parents=True, exist_ok=True)
            (job.pictures / f"suite_{job.pair}_samples.png").write_bytes(
                result.artifacts[SAMPLES_NAME].read_bytes()
            )
        state = load_checkpoint(result.checkpoint)
        ranking = checkpoint_ranking(
            selector, state["refiner_config"], synthetic, heldout, pair, job.seed, min(150, job.task_steps)
        )
        dynamics = _dynamics(
            state["loss_log"], config.pretrain_refiner_steps + config.pretrain_discriminator_steps
        )
    closed = metrics["downstream"]["gap_closed"]
    print(f"{job.pair} seed {job.seed}: gap closed {closed}, {card.verdict['verdict']}", file=sys.stderr)
    return {
        "pair": job.pair,
        "seed": job.seed,
        "train_seconds": round(train_seconds, 1),
        "selected_step": card.selection.get("step"),
        "label_consistency": card.selection.get("consistency"),
        "label_retention": card.selection.get("retention"),
        "verdict": card.verdict,
        "ranking": ranking,
        "dynamics": dynamics,
        **metrics,
    }


def _dynamics(loss_log: list[dict[str, float]], pretrain: int) -> dict[str, Any]:
    """How the adversarial phase went, from the loss log: D's patch accuracy (0.5 = D sees nothing, so
    R gets no direction), how far R moved images and the self-regularisation weight at the end."""
    adversarial = [row for row in loss_log if row["step"] > pretrain]
    if not adversarial:
        return {}

    def median(key: str) -> float | None:
        values = [row[key] for row in adversarial if key in row]
        return float(np.median(values)) if values else None

    last = adversarial[-1]
    return {
        "discriminator_accuracy_median": median("discriminator_accuracy"),
        "self_regularization_median": median("self_regularization"),
        "self_regularization_last": last.get("self_regularization"),
        "regularization_weight_last": last.get("regularization_weight"),
    }


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per pair: medians and spreads over seeds, the targets met or missed, verdicts."""
    pairs: dict[str, Any] = {}
    for name in dict.fromkeys(r["pair"] for r in runs):
        mine = [r for r in runs if r["pair"] == name]
        closed = [r["downstream"]["gap_closed"] for r in mine]
        known = [c for c in closed if c is not None]
        consistency = [r["label_consistency"] for r in mine if r["label_consistency"] is not None]
        retention = [r["label_retention"] for r in mine if r.get("label_retention") is not None]
        median = float(np.median(known)) if known else None
        worst = min(known) if known else None
        pairs[name] = {
            "gap_closed": spread(closed),
            "label_consistency": spread(consistency),
            "label_retention": spread(retention),
            "realism_refined": spread([r["realism"]["accuracy_real_vs_refined"] for r in mine]),
            "realism_synthetic": spread([r["realism"]["accuracy_real_vs_synthetic"] for r in mine]),
            "error_synthetic": spread([r["downstream"]["error_synthetic"] for r in mine]),
            "error_refined": spread([r["downstream"]["error_refined"] for r in mine]),
            "error_real": spread([r["downstream"]["error_real"] for r in mine]),
            "verdicts": [r["verdict"]["verdict"] for r in mine],
            "discriminator_accuracy": spread(
                [r["dynamics"].get("discriminator_accuracy_median") for r in mine if r.get("dynamics")]
            ),
            "met": {
                "gap_closed_median": median is not None and median >= TARGETS["gap_closed_median"],
                "gap_closed_worst": worst is not None and worst >= TARGETS["gap_closed_worst"],
                "label_consistency": bool(consistency) and min(consistency) >= TARGETS["label_consistency"],
            },
        }
    rhos = [r["ranking"]["spearman"] for r in runs if r["ranking"]["spearman"] is not None]
    validators = {}
    for name, _, _ in VALIDATORS:
        values = [r["ranking"].get("validators", {}).get(name) for r in runs]
        known = [v for v in values if v is not None]
        validators[name] = spread(known)
    return {
        "pairs": pairs,
        "spearman": spread(rhos),
        "spearman_runs": len(rhos),
        "validators": validators,
    }


def markdown(report: dict[str, Any]) -> str:
    s = report["summary"]
    lines = [
        "# Quality on the domain suite (`simgan bench quality --suite`)",
        "",
        f"Command: `{report['command']}`  ",
        f"Wall time: {report['seconds']:.0f} s on {report['machine']}; seeds {report['seeds']}; "
        f"images per run (synthetic, real, real held-out): {report['counts']}.  ",
        f"Training: the defaults with `{report['overrides']}` for every pair; nothing is set per pair.",
        "",
        "Each cell: median [min, max] over the seeds. Gap closed: (e_syn - e_ref) / (e_syn - e_real)",
        "of task models trained on synthetic, refined and (oracle) real labeled images, tested on",
        "held-out real ones (1 = as good as real labels, 0 = no better than raw synthetic, < 0 = worse).",
        "Label consistency: the share of the synthetic images' label quality the refined ones keep (a",
        "synthetic-trained task model reads their labels back). Label retention (the selector's gate): a",
        "task model trained on refined images reads the labels of other refined ones, as a share of the",
        "same on synthetic images. Realism: held-out accuracy of a fresh",
        "real-vs-X classifier (0.5 = cannot tell). D accuracy: the discriminator's median patch accuracy",
        "during the adversarial phase (0.5 = it tells nothing apart, so the refiner gets no direction).",
        "",
        "| pair | gap closed | label consistency | label retention | realism refined (synthetic) "
        "| D accuracy | verdicts | targets met |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, p in s["pairs"].items():
        met = ", ".join(k for k, v in p["met"].items() if v) or "none"
        lines.append(
            f"| {name} | {cell(p['gap_closed'], 2)} | {cell(p['label_consistency'], 3)} | "
            f"{cell(p.get('label_retention', spread([])), 3)} | "
            f"{cell(p['realism_refined'], 3)} ({cell(p['realism_synthetic'], 3)}) | "
            f"{cell(p['discriminator_accuracy'], 2)} | {', '.join(p['verdicts'])} | {met} |"
        )
    rho = s["spearman"]
    lines += [
        "",
        "Rank correlation (Spearman) of the label-free selection score with downstream error over each "
        f"run's checkpoints: {cell(rho, 2)} over {s['spearman_runs']} runs (positive = the criterion ranks "
        "useful checkpoints first).",
        "",
        "The same for each label-free figure alone (signed so that lower should be more useful), median",
        "[min, max] over runs: "
        + "; ".join(f"{name} {cell(v, 2)} ({v['n']} runs)" for name, v in s.get("validators", {}).items())
        + ".",
        "",
        "Targets: median gap closed >= 0.5 and worst seed >= 0.25 on every pair, label consistency >= 0.95; "
        f"on the eye pair real-vs-refined accuracy <= {EYE_REALISM_TARGET}.",
        "",
        "Per run: "
        + "; ".join(
            f"{r['pair']} seed {r['seed']}: closed {_fmt(r['downstream']['gap_closed'])}, "
            f"step {r['selected_step']}, {r['verdict']['verdict']}, train {r['train_seconds']:.0f} s"
            for r in report["runs"]
        ),
    ]
    return "\n".join(lines) + "\n"


def _fmt(value: float | None) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.2f}"


def command(args: Any) -> str:
    """The command line that repeats this suite run exactly."""
    import shlex

    parts = ["simgan", "bench", "quality", "--suite"]
    parts += ["--quick"] if args.quick else ["--pairs", ",".join(args.pairs), "--seeds", args.seeds]
    parts += ["--synthetic", str(args.synthetic), "--real", str(args.real), "--labeled", str(args.labeled)]
    parts += ["--task-steps", str(args.task_steps), "--jobs", str(args.jobs), "--threads", str(args.threads)]
    if args.config:
        parts += ["--config", *args.config]
    return shlex.join(parts)


def run_suite(args: Any, overrides: dict[str, str]) -> dict[str, Any]:
    """Every (pair, seed) run, `args.jobs` at a time in spawned processes, and the report."""
    import os
    import platform

    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    pictures = args.out if not args.quick else None
    jobs = [
        SuiteRun(
            pair,
            seed,
            (args.synthetic, args.real, args.labeled),
            overrides,
            args.task_steps,
            args.threads,
            bool(args.quick),
            pictures if seed == seeds[0] else None,
        )
        for pair in args.pairs
        for seed in seeds
    ]
    started = time.perf_counter()
    if args.jobs > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # spawn: a fresh interpreter per run, no torch state inherited through fork.
        with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            runs = list(pool.map(run, jobs))
    else:
        runs = [run(job) for job in jobs]
    return {
        "command": command(args),
        "seconds": round(time.perf_counter() - started, 1),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
        "seeds": seeds,
        "counts": [args.synthetic, args.real, args.labeled],
        "overrides": overrides,
        "summary": summarize(runs),
        "runs": runs,
    }
