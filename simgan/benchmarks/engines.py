"""The in-process part of `simgan bench refine`: every engine this machine offers, side by side.

For each engine (plain onnxruntime CPU provider as it comes: the baseline; then the engines
`models.providers.engines` would try, as the service opens them) and batch size: images per
second, the ratio to the baseline at batch 64 measured in the same run, GFLOP/s (the refiner's
convolutions counted from its ONNX graph) and the share of the machine's own matmul bound at
that precision, measured in the same run through the same engines (a large MatMul graph). Every
figure is the median of interleaved repeats, so drift in machine load hits every cell alike.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from simgan.benchmarks.stats import cell, spread

BATCH_SIZES = (1, 4, 16, 32, 64)
SETTLE_SECONDS = 0.05
"""Pause before each timed cell: onnxruntime's idle threads spin for a while after a call, and on a
few cores they would steal time from the next engine's cell (measured: up to 4x at batch 1)."""
BASELINE = "onnxruntime CPU provider, defaults"
MATMUL_SIZE = 1024


@dataclass
class Runner:
    """One engine ready to run: `refine` maps uint8 NHWC to uint8 NHWC."""

    name: str
    precision: str
    refine: Any


def conv_flops_per_pixel(onnx_path: Path) -> float | None:
    """Multiply-adds x 2 of every convolution per output pixel; None without the `onnx` package or for
    a graph whose convolutions do not all keep the image size (stride 1)."""
    try:
        import onnx
    except ImportError:
        return None
    model = onnx.load(str(onnx_path))
    weights = {init.name: list(init.dims) for init in model.graph.initializer}
    total = 0
    for node in model.graph.node:
        if node.op_type != "Conv":
            continue
        attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        shape = weights.get(node.input[1])
        if shape is None or any(s != 1 for s in attributes.get("strides", [1])):
            return None
        total += 2 * int(np.prod(shape))
    return float(total)


def runners(onnx_path: Path, card: Any, threads: int) -> list[Runner]:
    """The baseline, then every engine offered here (CUDA, OpenVINO in each precision, the CPU
    provider as the service sets it up), each opened as the service opens it."""
    import onnxruntime as ort

    from models.providers import cpu_has_bf16, engines
    from models.session import RefinerError, RefinerSession

    plain = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    found = [Runner(BASELINE, "fp32", lambda x: plain.run([card.io.output_name], {card.io.input_name: x})[0])]
    offered = engines("auto", "auto")
    # Both OpenVINO precisions where the CPU has native bf16 and auto offered only one.
    for engine in engines("openvino", "bf16") if cpu_has_bf16() else []:
        if engine not in offered:
            offered.insert(-1, engine)
    for engine in offered:
        try:
            session = RefinerSession(onnx_path, card, engine, threads)
        except RefinerError as exc:
            print(f"skipping {engine}: {exc}")
            continue
        found.append(Runner(f"{session.provider} (service settings)", engine.precision, session.refine))
    return found


LARGE_IMAGES = 4
"""The large request of the memory figure: this many images of `large_side` squared."""


def _resident_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _retained(onnx_path: str, card: Any, engine_index: int, threads: int, side: int) -> dict[str, float]:
    """In a fresh process: resident MB after small batches, after one large batch, and after small
    batches again (what a large request leaves behind)."""
    found = runners(Path(onnx_path), card, threads)
    refine = found[engine_index].refine
    small = np.zeros((64, 35, 55, card.channels), np.uint8)
    refine(small)
    before = _resident_mb()
    refine(np.zeros((LARGE_IMAGES, side, side, card.channels), np.uint8))
    refine(small)
    return {"before_mb": round(before, 1), "after_mb": round(_resident_mb(), 1)}


def retained_memory(onnx_path: Path, card: Any, names: list[str], threads: int, side: int) -> dict[str, Any]:
    """`_retained` for each engine, each in its own process so none inherits another's memory."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    figures = {}
    for index, name in enumerate(names):
        with context.Pool(1) as pool:
            figures[name] = pool.apply(_retained, (str(onnx_path), card, index, threads, side))
    return figures


def matmul_bounds(threads: int, repeats: int) -> dict[str, dict[str, Any]]:
    """GFLOP/s of a square fp32 MatMul graph on the CPU provider (fp32) and, where the CPU has
    native bf16, on OpenVINO with its bf16 hint: what this machine can do at best."""
    try:
        import onnx
        from onnx import TensorProto, helper
    except ImportError:
        return {}
    import onnxruntime as ort

    from models.providers import OPENVINO, Engine, cpu_has_bf16, session_options

    n = MATMUL_SIZE
    rng = np.random.default_rng(0)
    weight = helper.make_tensor("w", TensorProto.FLOAT, [n, n], rng.standard_normal(n * n).astype(np.float32))
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "matmul",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [n, n])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [n, n])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    x = rng.standard_normal((n, n)).astype(np.float32)
    sessions: dict[str, Any] = {}
    options, providers = session_options(Engine("CPUExecutionProvider"), threads)
    sessions["fp32"] = ort.InferenceSession(model.SerializeToString(), options, providers=providers)
    if cpu_has_bf16():
        try:
            options, providers = session_options(Engine(OPENVINO, "bf16"), threads)
            sessions["bf16"] = ort.InferenceSession(model.SerializeToString(), options, providers=providers)
        except Exception as exc:  # no OpenVINO here: no bf16 bound
            print(f"no bf16 matmul bound: {exc}")
    del onnx
    figures: dict[str, list[float]] = {p: [] for p in sessions}
    for _ in range(repeats + 1):
        for precision, session in sessions.items():
            started = time.perf_counter()
            for _ in range(4):
                session.run(None, {"x": x})
            figures[precision].append(4 * 2 * n**3 / (time.perf_counter() - started) / 1e9)
    return {p: spread(v[1:]) for p, v in figures.items()}  # the first run is a warm-up


def _time_cells(
    found: list[Runner], images: np.ndarray, batch_sizes: tuple[int, ...], repeats: int
) -> dict[str, dict[int, list[float]]]:
    """Images per second of every runner at every batch size, interleaved over the repeats."""
    for runner in found:  # warm-up at every shape, before any clock runs
        for batch in batch_sizes:
            runner.refine(images[:batch])
    speeds: dict[str, dict[int, list[float]]] = {r.name: {b: [] for b in batch_sizes} for r in found}
    for _ in range(repeats):
        for runner in found:
            for batch in batch_sizes:
                time.sleep(SETTLE_SECONDS)
                started = time.perf_counter()
                for start in range(0, len(images), batch):
                    runner.refine(images[start : start + batch])
                speeds[runner.name][batch].append(len(images) / (time.perf_counter() - started))
    return speeds


def measure(
    onnx_path: Path,
    card: Any,
    images: np.ndarray,
    repeats: int,
    threads: int = 0,
    large_side: int = 512,
    batch_sizes: tuple[int, ...] = BATCH_SIZES,
) -> dict[str, Any]:
    """Every engine at every batch size; ratios to the baseline at the largest batch, GFLOP/s, shares
    of the matmul bound, and what memory a large batch leaves behind."""
    found = runners(onnx_path, card, threads)
    reference = found[0].refine(images)
    # In one worker thread, as the service's batcher calls its engine: on this 2-core machine batch-1
    # calls from Python's main thread measured 2x (CPU provider) to 3.7x (OpenVINO) slower.
    with ThreadPoolExecutor(max_workers=1) as worker:
        speeds = worker.submit(_time_cells, found, images, batch_sizes, repeats).result()
        bounds = worker.submit(matmul_bounds, threads, repeats).result()
    memory = retained_memory(onnx_path, card, [r.name for r in found], threads, large_side)
    per_pixel = conv_flops_per_pixel(onnx_path)
    gflop = None if per_pixel is None else per_pixel * images.shape[1] * images.shape[2] / 1e9
    baseline = speeds[BASELINE][max(batch_sizes)]
    rows = []
    for runner in found:
        error = int(np.abs(runner.refine(images).astype(np.int16) - reference.astype(np.int16)).max())
        for batch in batch_sizes:
            values = speeds[runner.name][batch]
            bound = bounds.get(runner.precision, {}).get("median")
            rate = spread(values)["median"]
            ratios = [v / b for v, b in zip(values, baseline, strict=True)]
            flops = None if gflop is None else rate * gflop
            rows.append(
                {
                    "engine": runner.name,
                    "precision": runner.precision,
                    "batch": batch,
                    "images_per_second": spread(values),
                    "ratio_to_baseline_at_largest_batch": spread(ratios),
                    "gflop_per_second": None if flops is None else round(flops, 1),
                    "share_of_matmul_bound": None if flops is None or not bound else round(flops / bound, 3),
                    "max_grey_levels_from_baseline": error,
                }
            )
    return {
        "gflop_per_image": gflop,
        "threads": threads or f"engine default ({os.cpu_count()} logical CPUs)",
        "matmul_bound_gflop_per_second": bounds,
        "resident_mb_around_a_large_batch": {"batch": [LARGE_IMAGES, large_side, large_side], **memory},
        "rows": rows,
    }


def markdown(engine: dict[str, Any]) -> list[str]:
    bounds = ", ".join(f"{p} {cell(f, 0)}" for p, f in engine["matmul_bound_gflop_per_second"].items())
    gflop = engine["gflop_per_image"]
    cost = f"Refiner cost: {gflop:.3f} GFLOP per image (its convolutions); " if gflop else ""
    lines = [
        f"{cost}this machine's matmul bound ({MATMUL_SIZE}-square MatMul), GFLOP/s: "
        f"{bounds or 'not measured (needs the onnx package)'}; threads: {engine['threads']}.",
        "",
        "| engine | precision | batch | images/s | vs baseline at largest batch | GFLOP/s | share of bound "
        "| max grey levels from baseline |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in engine["rows"]:
        share = row["share_of_matmul_bound"]
        lines.append(
            f"| {row['engine']} | {row['precision']} | {row['batch']} | {cell(row['images_per_second'], 1)} "
            f"| {cell(row['ratio_to_baseline_at_largest_batch'], 2)} | {row['gflop_per_second'] or 'n/a'} "
            f"| {'n/a' if share is None else f'{share:.0%}'} | {row['max_grey_levels_from_baseline']} |"
        )
    memory = engine["resident_mb_around_a_large_batch"]
    lines += [
        "",
        f"Memory a large request leaves behind: resident MB of a fresh process after batches of 64 eye "
        f"images, then after one {' x '.join(map(str, memory['batch']))} batch and those small ones again.",
        "",
        "| engine | before | after |",
        "| --- | --- | --- |",
    ]
    figures = {name: f for name, f in memory.items() if name != "batch"}
    lines += [f"| {name} | {f['before_mb']} | {f['after_mb']} |" for name, f in figures.items()]
    return lines
