"""End-to-end training runs through examples/train.py: resume, gradient accumulation, two real DDP ranks.

These use a tiny random BERT saved to disk as the "backbone" (with the real MiniLM tokenizer) and the real
../shared/data files, capped to a few dozen rows, so that exactness can be checked quickly. Dropout is off so that
one process and two ranks compute the same thing.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import script_env
from train_runs import assert_same_weights, base_args, run_train, weights

ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = ROOT.parent / "shared" / "data"
TRAIN = ROOT / "examples" / "train.py"

pytestmark = pytest.mark.skipif(not DATA_DIR.is_dir(), reason="../shared/data is not beside the checkout")


@pytest.mark.distributed
@pytest.mark.parametrize("strategy", ["round_robin", "sum", "pcgrad"])
def test_two_ddp_ranks_match_one_process_with_the_same_global_batch(tiny_backbone, small_minbert, tmp_path, strategy):
    """torchrun --nproc_per_node 2 (gloo, CPU) with batch 4 per rank == one process with batch 8."""
    one = tmp_path / "one"
    two = tmp_path / "two"
    run_train(base_args(tiny_backbone, small_minbert, one, strategy, batch=8))
    result = run_train(base_args(tiny_backbone, small_minbert, two, strategy, batch=4), nproc=2)
    assert "world size 2" in result.stdout + result.stderr
    assert_same_weights(one, two)
    # and training did move the weights away from the backbone
    moved = (
        (
            weights(one)["encoder.encoder.layer.0.output.dense.weight"]
            - load_file(str(tiny_backbone / "model.safetensors"))["encoder.layer.0.output.dense.weight"]
        )
        .abs()
        .max()
    )
    assert moved > 1e-4


@pytest.mark.distributed
@pytest.mark.parametrize(
    "strategy, extra",
    [
        ("round_robin", {"task_weighting": "uncertainty", "weighting_options": json.dumps({"lr": 0.05})}),
        ("pcgrad", {"aggregator": "nash_mtl", "task_weighting": "famo"}),
        ("pcgrad", {"aggregator": "upgrad", "task_weighting": "dbmtl"}),
    ],
    ids=["round_robin-uncertainty", "nash_mtl-famo", "upgrad-dbmtl"],
)
def test_task_weighting_and_new_aggregators_under_two_ddp_ranks_match_one_process(
    tiny_backbone, small_minbert, tmp_path, strategy, extra
):
    """The loss balancers weigh each task by losses averaged over the ranks, and the aggregators see the all-reduced
    Gram matrix: two ranks of batch 4 end where one process of batch 8 does (weights and learned weighting)."""
    if extra.get("aggregator") == "upgrad":
        pytest.importorskip("torchjd")
        pytest.importorskip("quadprog")
    one = tmp_path / "one"
    two = tmp_path / "two"
    run_train(base_args(tiny_backbone, small_minbert, one, strategy, batch=8, **extra))
    result = run_train(base_args(tiny_backbone, small_minbert, two, strategy, batch=4, **extra), nproc=2)
    assert "world size 2" in result.stdout + result.stderr
    assert_same_weights(one, two)
    logs = [json.loads((d / "trainer_state.json").read_text())["log_history"] for d in (one, two)]
    logged = [
        {f"{i}/{k}": v for i, h in enumerate(log) for k, v in h.items() if k.startswith("task_weight_")}
        for log in logs
    ]
    assert logged[0] and logged[0] == pytest.approx(logged[1], abs=1e-5)


@pytest.mark.parametrize("strategy", ["sum", "pcgrad"])
def test_gradient_accumulation_equals_the_double_batch(tiny_backbone, small_minbert, tmp_path, strategy):
    """Accumulating 2 micro-batches of 4 gives the step of one batch of 8 (PCGrad projects the accumulated sums)."""
    single = tmp_path / "ga1"
    accumulated = tmp_path / "ga2"
    run_train(base_args(tiny_backbone, small_minbert, single, strategy, batch=8))
    run_train(base_args(tiny_backbone, small_minbert, accumulated, strategy, batch=4, gradient_accumulation_steps=2))
    assert_same_weights(single, accumulated)


def test_resumed_run_matches_an_uninterrupted_one(tiny_backbone, small_minbert, tmp_path):
    """Stop after a checkpoint mid-epoch (and past an epoch boundary), resume, and end with the same weights."""
    full = tmp_path / "full"
    extra = {"num_train_epochs": 2, "save_strategy": "steps", "save_steps": 5, "task_sampling": "proportional"}
    run_train(base_args(tiny_backbone, small_minbert, full, "round_robin", batch=8, **extra))
    steps_per_epoch = 12  # 3 tasks x 32 capped rows / batch 8
    state = json.loads((full / f"checkpoint-{2 * steps_per_epoch}" / "trainer_state.json").read_text())
    assert state["global_step"] == 2 * steps_per_epoch
    for checkpoint in ("checkpoint-5", "checkpoint-15"):
        resumed = tmp_path / f"resumed-{checkpoint}"
        resumed.mkdir()
        # a copy of the checkpoint in a fresh output folder, as after a crash
        subprocess.run(["cp", "-r", str(full / checkpoint), str(resumed / checkpoint)], check=True)
        run_train(
            base_args(
                tiny_backbone,
                small_minbert,
                resumed,
                "round_robin",
                batch=8,
                **extra,
                resume_from_checkpoint=str(resumed / checkpoint),
            )
        )
        assert_same_weights(full, resumed, atol=1e-6)


def test_sigkill_mid_epoch_then_resume_reaches_the_same_weights(tiny_backbone, small_minbert, tmp_path):
    """A real SIGKILL of a real training process, then ``--resume_from_checkpoint last``: same final weights as a
    run never interrupted (the multitask sampling position included)."""
    import signal
    import time

    extra = {
        "num_train_epochs": 3,
        "save_strategy": "steps",
        "save_steps": 4,
        "task_sampling": "temperature",
        "sampling_temperature": 2.0,
    }
    full = tmp_path / "full"
    run_train(base_args(tiny_backbone, small_minbert, full, "round_robin", batch=8, **extra))

    killed = tmp_path / "killed"
    args = base_args(tiny_backbone, small_minbert, killed, "round_robin", batch=8, **extra)
    env = script_env()
    process = subprocess.Popen(
        [sys.executable, str(TRAIN), *args], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 300
    while not (killed / "checkpoint-16" / "mtbert_checkpoint.json").exists():
        assert process.poll() is None, "the run ended before it could be killed"
        assert time.time() < deadline, "no checkpoint-16 within 300 s"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)  # mid-epoch 1 (12 steps per epoch), possibly while saving checkpoint-20
    process.wait()
    assert process.returncode == -signal.SIGKILL
    assert not (killed / "model.safetensors").exists()

    result = run_train([*args, "--resume_from_checkpoint", "last"])
    assert "resuming from" in result.stdout + result.stderr
    assert_same_weights(full, killed, atol=1e-6)


def test_checkpoint_averaging_saves_the_mean_of_the_last_checkpoints(tiny_backbone, small_minbert, tmp_path):
    """average_checkpoints 2: the final model is the mean of the last two epoch checkpoints' weights."""
    out = tmp_path / "avg"
    run_train(
        base_args(
            tiny_backbone,
            small_minbert,
            out,
            "round_robin",
            8,
            num_train_epochs=3,
            save_strategy="epoch",
            save_total_limit=3,
            average_checkpoints=2,
        )
    )
    checkpoints = sorted(out.glob("checkpoint-*"), key=lambda d: int(d.name.split("-")[1]))
    assert len(checkpoints) == 3
    last_two = [load_file(str(c / "model.safetensors")) for c in checkpoints[-2:]]
    final = weights(out)
    for name in ("encoder.encoder.layer.0.attention.self.query.weight", "heads.sst.out_proj.weight"):
        torch.testing.assert_close(final[name], (last_two[0][name] + last_two[1][name]) / 2)
        assert not torch.equal(final[name], last_two[1][name])
    assert json.loads((out / "metrics.json").read_text())["averaged_checkpoints"] == 2


@pytest.mark.distributed
def test_smart_regularisation_trains_under_two_ddp_ranks(tiny_backbone, small_minbert, tmp_path):
    """SMART's inner gradient (w.r.t. the embedding noise, inside forward) must not upset DDP's gradient sync:
    two ranks train every head kind with it, and the per-task losses stay finite."""
    tasks = {
        "sst": {"classifier_dropout": 0.0, "smart_alpha": 1.0},
        "qqp": {"pair_encoding": "dual", "classifier_dropout": 0.0, "smart_alpha": 1.0},
        "sts": {"pair_encoding": "cosine", "pooling": "mean", "smart_alpha": 1.0},
    }
    out = tmp_path / "smart"
    result = run_train(
        base_args(tiny_backbone, small_minbert, out, "round_robin", batch=4, tasks=json.dumps(tasks)), nproc=2
    )
    assert "world size 2" in result.stdout + result.stderr
    losses = [log for log in json.loads((out / "trainer_state.json").read_text())["log_history"] if "loss" in log]
    assert losses and all(math.isfinite(log["loss"]) for log in losses)
    assert {"loss_sst", "loss_qqp", "loss_sts"} <= set().union(*losses)


def test_do_eval_alone_scores_without_training(tiny_backbone, small_minbert, tmp_path):
    """As in run_glue, --do_eval names the only phase: dev metrics are written, nothing is trained or saved (a plain
    backbone's random heads need --allow_untrained_heads; tests/cli/test_cli_bad_inputs.py checks the refusal without
    it)."""
    out = tmp_path / "eval_only"
    args = base_args(tiny_backbone, small_minbert, out, "round_robin", batch=8, write_predictions=True)
    run_train([*args, "--do_eval", "--allow_untrained_heads", "true"])
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"eval_sst_accuracy", "eval_qqp_accuracy", "eval_sts_pearson", "eval_average"} <= set(metrics)
    assert not any(k.startswith("train_") for k in metrics)
    assert not (out / "model.safetensors").exists() and not (out / "trainer_state.json").exists()
    assert not (out / "predictions").exists()  # --do_predict was not named
