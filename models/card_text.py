"""The model card as people read it: Markdown in the Hugging Face model-card layout.

Written as README.md beside card.json when a model is published (and again when an evaluation is
recorded), and served at GET /models/{version}/card.md. Everything in it comes from the JSON card,
which stays the record machines read.
"""

from __future__ import annotations

import json
from typing import Any

from models.card import ModelCard

LICENSE = "other"
"""A refiner is derived from the datasets it was trained on: its terms are theirs (the card says so)."""

METRIC_NOTES = {
    "gap_closed": "share of the synthetic-to-real gap of a downstream task model that training on "
    "refined images closes: 1 = as good as training on labeled real images, 0 = no better than "
    "synthetic, < 0 = worse",
    "realism": "held-out accuracy of a fresh classifier telling real from refined (and from synthetic, "
    "for contrast): 0.5 = indistinguishable, 1.0 = always told apart; lower is more real",
    "kid": "kernel distance between refined and real features (lower is closer); read it with realism, "
    "never alone: it is blind to artefacts no synthetic image has",
    "labels": "the oracle's error on refined images against their synthetic labels, next to its error on "
    "the synthetic images: close numbers mean refinement kept the labels",
}


def _flat(data: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Nested numbers as dotted rows: {"a": {"b": 0.4}} -> [("a.b", 0.4)]."""
    if isinstance(data, dict):
        rows: list[tuple[str, Any]] = []
        for key in sorted(data):
            rows += _flat(data[key], f"{prefix}{key}.")
        return rows
    if isinstance(data, bool) or not isinstance(data, int | float):
        return []
    return [(prefix.rstrip("."), data)]


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _front_matter(card: ModelCard) -> str:
    tags = ["simgan", "sim-to-real", "image-refinement", "onnx"]
    ids = [d["id"] for d in card.datasets if d.get("id")]
    lines = ["---", f"license: {LICENSE}", "library_name: onnx", "pipeline_tag: image-to-image", "tags:"]
    lines += [f"- {tag}" for tag in tags]
    if ids:
        lines += ["datasets:", *[f"- {i}" for i in ids]]
    return "\n".join([*lines, "---", ""])


def _lineage(card: ModelCard, base_url: str) -> list[str]:
    job = card.job_id
    lines = [
        f"- **Version:** {card.version}, published {card.created_at or 'unknown'}",
        f"- **Parent:** {card.parent or 'none'} (the model that was active when this one was published;"
        " training starts from scratch, not from it)",
        f"- **Train job:** {job or 'none (published from the command line or bundled)'}",
    ]
    if job:
        for name in ("samples.png", "loss_curves.png", "evaluation.png"):
            lines.append(f"- [{name}]({base_url}/train-jobs/{job}/artifacts/{name})")
    lines.append(f"- **ONNX sha256:** `{card.onnx_sha256}` (opset {card.onnx_opset})")
    lines.append(
        f"- **Made by:** {', '.join(f'{k} {v}' for k, v in sorted(card.producer.items())) or 'unknown'}"
    )
    return lines


def card_markdown(card: ModelCard, base_url: str = "") -> str:
    """`card` as a Hugging Face style README.md; links to the job's pictures start with `base_url`."""
    verdict = card.verdict or {}
    io = card.io
    kind = "grayscale" if io.channels == 1 else "RGB"
    out = [_front_matter(card), f"# simgan refiner {card.version}", ""]
    out += [
        f"A {kind} image refiner trained with S+U learning (SimGAN, Shrivastava et al. 2017): it makes "
        "synthetic images look like the real images it was trained on while keeping what the simulator "
        f"labelled. Verdict of its train job: **{verdict.get('verdict', 'none recorded')}**"
        + (f" ({verdict['why']})" if verdict.get("why") else "")
        + ".",
        "",
    ]
    if card.notes:
        out += [f"Notes: {card.notes}", ""]
    out += [
        "## Uses",
        "",
        "### Direct use",
        "",
        f"Refine synthetic {kind} images of the kind it was trained on (sizes any, {io.channels} channel(s), "
        "8-bit) before training a downstream model on them; the images' annotations pass through unchanged.",
        "",
        "### Out-of-scope use",
        "",
        "Images from another simulator, camera or subject than its training data; making images to pass "
        "as real photographs; any use where its output is taken as a measurement. It changes pixels, never "
        "labels, and it cannot add what its real training set did not show.",
        "",
        "## Training data",
        "",
        "| kind | id | count | height x width | channels | sha256 | source |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for d in card.datasets:
        source = d.get("source") or ", ".join(f"{k}={d[k]}" for k in ("simulator", "seed", "path") if k in d)
        out.append(
            f"| {d.get('kind', '')} | {d.get('id', '')} | {d.get('count', '')} | "
            f"{d.get('height', '')}x{d.get('width', '')} | {d.get('channels', '')} | "
            f"`{str(d.get('sha256', ''))[:16]}` | {source} |"
        )
    out += [
        "",
        "## Training procedure",
        "",
        f"{card.steps_trained} steps in all (pretraining included). Config:",
        "",
        "```json",
        json.dumps(card.config, indent=2, sort_keys=True),
        "```",
        "",
    ]
    if card.selection.get("why"):
        out += [f"Checkpoint chosen: step {card.selection.get('step')}: {card.selection['why']}.", ""]
    out += ["## Evaluation", ""]
    numbers = _flat(verdict.get("numbers", {}))
    if numbers:
        out += [
            f"The train job's verdict ({verdict.get('basis', '')}):",
            "",
            "| number | value |",
            "| --- | --- |",
        ]
        out += [f"| {name} | {_number(value)} |" for name, value in numbers]
        out.append("")
    latest = card.metrics.get("latest", card.metrics)
    measured = [(n, v) for n, v in _flat(latest) if not n.startswith(("counts", "seed", "seconds"))]
    if measured:
        out += [
            "Evaluation (`simgan evaluate` or config `evaluate`):",
            "",
            "| metric | value |",
            "| --- | --- |",
        ]
        out += [f"| {name} | {_number(value)} |" for name, value in measured]
        out.append("")
    else:
        out += ["No evaluation recorded (train with config `evaluate: true`, or run `simgan evaluate`).", ""]
    out += ["How to read them:", ""]
    out += [f"- **{name}**: {text}." for name, text in METRIC_NOTES.items()]
    out += [
        "",
        "## Limitations",
        "",
        "Measured only on the data named above. A refiner that looks real to a classifier may still move "
        "features a downstream task depends on: check label preservation before trusting it."
        + (f" What to try next: {'; '.join(verdict['try'])}." if verdict.get("try") else ""),
        "",
        "## How to use",
        "",
        "```sh",
        f"curl -X POST localhost:8000/refine -F image=@eye.png -F model={card.version} "
        "-H 'accept: image/png' -o refined.png",
        "```",
        "",
        f"Or with onnxruntime: input `{io.input_name}` {io.dtype} {io.layout} "
        f"{io.value_range[0]}..{io.value_range[1]}, output `{io.output_name}` the same; dynamic axes "
        f"{', '.join(io.dynamic_axes)}.",
        "",
        "## License",
        "",
        f"`{LICENSE}`: the weights are derived from the training datasets above and are used under "
        "their terms.",
        "",
        "## Lineage",
        "",
        *_lineage(card, base_url),
        "",
    ]
    return "\n".join(out)
