"""Gradient aggregators (PCGrad, CAGrad, IMTL-G) under sharding and across "nodes", against one process.

Every case trains the same saved tiny model (tests/sharded_train.py) for 3 steps with a global batch of 8 and
compares the weights with a single process to 1e-5:

- FSDP2 on two real ranks (torchrun, gloo, CPU): the model loaded with ``from_pretrained(distributed_config=...)``,
  every parameter a DTensor shard, FULL_SHARD and SHARD_GRAD_OP, with and without gradient accumulation;
- DeepSpeed ZeRO-1 and ZeRO-2 through ``accelerate launch`` with examples/accelerate/deepspeed_zero2.yaml on two
  processes (skipped where ``deepspeed`` is not installed; it installs from PyPI and runs on CPU with gloo);
- two single-rank "nodes" (two torchrun launchers, ``--nnodes 2``, on 127.0.0.1), PCGrad over DDP (c10d
  rendezvous) and over FSDP2 (static rendezvous);
- the refusals (FSDP1, ZeRO-3), each one line.
"""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from conftest import script_env, tiny_bert_config

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tests" / "sharded_train.py"
ACCELERATE = ROOT / "examples" / "accelerate"
ATOL = 1e-5
TIMEOUT = 240  # seconds per launch; a run takes about 20-30 s on two busy cores

sys.path.insert(0, str(SCRIPT.parent))
import sharded_train  # noqa: E402

HAS_DEEPSPEED = importlib.util.find_spec("deepspeed") is not None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", *args]


def zero_launch(stage: int, ga: int, *script_args: str) -> list[str]:
    """accelerate launch --config_file examples/accelerate/deepspeed_zero2.yaml on two CPU processes."""
    config = ACCELERATE / "deepspeed_zero2.yaml"
    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(config),
        "--num_processes",
        "2",
        "--main_process_ip",
        "127.0.0.1",
        "--main_process_port",
        str(free_port()),
        "--mixed_precision",
        "no",
        "--zero_stage",
        str(stage),
        "--gradient_accumulation_steps",
        str(ga),
        *script_args,
    ]


def run(cmd: list[str]) -> str:
    result = subprocess.run(cmd, cwd=ROOT, env=script_env(), capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result.stdout + result.stderr


def train_args(model_dir: Path, output: Path, batch: int, aggregator: str, ga: int = 1, *extra: str) -> list[str]:
    return [
        str(SCRIPT),
        "--model_dir",
        str(model_dir),
        "--output",
        str(output),
        "--batch",
        str(batch),
        "--aggregator",
        aggregator,
        "--gradient_accumulation_steps",
        str(ga),
        *extra,
    ]


def assert_same_weights(reference: Path, other: Path) -> None:
    a, b = torch.load(reference, weights_only=True), torch.load(other, weights_only=True)
    assert b["world_size"] == 2 and a["world_size"] == 1
    assert a["state"].keys() == b["state"].keys()
    gap = max((a["state"][k].float() - b["state"][k].float()).abs().max().item() for k in a["state"])
    assert gap < ATOL, f"largest weight difference {gap:.3g}"


@pytest.fixture(scope="module")
def tiny_model(tokenizer, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tiny_multitask")
    sharded_train.save_tiny_model(path, tokenizer.vocab_size)
    return path


@pytest.fixture(scope="module")
def reference(tiny_model, tmp_path_factory):
    """One process, batch 8: the weights after 3 steps, per aggregator (computed once)."""
    folder = tmp_path_factory.mktemp("reference")
    done: dict[str, Path] = {}

    def weights(aggregator: str) -> Path:
        if aggregator not in done:
            output = folder / f"{aggregator}.pt"
            sharded_train.main(train_args(tiny_model, output, 8, aggregator)[1:])
            initial = sharded_train.MultitaskBertModel.from_pretrained(tiny_model).state_dict()
            trained = torch.load(output, weights_only=True)["state"]
            moved = max((trained[k] - v).abs().max().item() for k, v in initial.items())
            assert moved > 1e-4  # training moved the weights: equality below is not trivial
            done[aggregator] = output
        return done[aggregator]

    return weights


@pytest.mark.distributed
@pytest.mark.parametrize(
    ("shard", "aggregator", "ga"),
    [("full_shard", "pcgrad", 1), ("shard_grad_op", "cagrad", 1), ("full_shard", "imtlg", 2)],
)
def test_fsdp2_two_ranks_match_one_process(tiny_model, reference, tmp_path, shard, aggregator, ga):
    """Per-task gradients stay DTensor shards; the Gram matrix is the all-reduced sum of per-shard dot products."""
    output = tmp_path / "fsdp.pt"
    log = run(
        torchrun(
            "--nproc_per_node",
            "2",
            "--master_addr",
            "127.0.0.1",
            "--master_port",
            str(free_port()),
            *train_args(tiny_model, output, 8 // (2 * ga), aggregator, ga, "--shard", shard),
        )
    )
    assert "FSDPMultitaskBertModel" in log
    assert_same_weights(reference(aggregator), output)


@pytest.mark.distributed
@pytest.mark.skipif(not HAS_DEEPSPEED, reason="deepspeed is not installed (pip install deepspeed: it runs on CPU)")
@pytest.mark.parametrize(("stage", "aggregator", "ga"), [(1, "cagrad", 1), (2, "pcgrad", 1), (2, "imtlg", 2)])
def test_deepspeed_zero_through_accelerate_matches_one_process(tiny_model, reference, tmp_path, stage, aggregator, ga):
    """accelerate launch --config_file examples/accelerate/deepspeed_zero2.yaml (2 CPU processes, gloo)."""
    output = tmp_path / "zero.pt"
    assert f"zero stage {stage}" in run(
        zero_launch(stage, ga, *train_args(tiny_model, output, 8 // (2 * ga), aggregator, ga))
    )
    assert_same_weights(reference(aggregator), output)


@pytest.mark.distributed
@pytest.mark.skipif(not HAS_DEEPSPEED, reason="deepspeed is not installed (pip install deepspeed: it runs on CPU)")
def test_deepspeed_zero3_is_refused_in_one_line(tiny_model, tmp_path):
    cmd = zero_launch(3, 1, *train_args(tiny_model, tmp_path / "z3.pt", 4, "pcgrad"))
    result = subprocess.run(cmd, cwd=ROOT, env=script_env(), capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if "RuntimeError: strategy 'pcgrad'" in line]
    assert lines and "not ZeRO-3" in lines[0] and "examples/accelerate/fsdp.yaml" in lines[0], result.stderr[-3000:]


def test_accelerate_examples_load_as_fsdp2_and_zero2():
    from accelerate.commands.config.config_args import load_config_from_file

    fsdp = load_config_from_file(str(ACCELERATE / "fsdp.yaml"))
    assert fsdp.distributed_type == "FSDP" and fsdp.fsdp_config["fsdp_version"] == 2
    zero = load_config_from_file(str(ACCELERATE / "deepspeed_zero2.yaml"))
    assert zero.distributed_type == "DEEPSPEED" and zero.deepspeed_config["zero_stage"] == 2


@pytest.mark.distributed
@pytest.mark.parametrize(("rendezvous", "shard"), [("c10d", "none"), ("static", "full_shard")])
def test_two_nodes_on_loopback_match_one_process(tiny_model, reference, tmp_path, rendezvous, shard):
    """Two torchrun launchers (``--nnodes 2 --nproc_per_node 1``) on 127.0.0.1, PCGrad: over DDP with a c10d
    rendezvous, over FSDP2 with a static one (``--master_addr/--master_port/--node_rank``)."""
    port = free_port()
    output = tmp_path / "two_nodes.pt"  # global rank 0 writes it, whichever launcher it landed on (c10d)
    procs = []
    for node_rank in (0, 1):
        if rendezvous == "c10d":
            meeting = [
                "--rdzv_backend",
                "c10d",
                "--rdzv_endpoint",
                f"127.0.0.1:{port}",
                "--rdzv_id",
                "mtbert-test",
                "--rdzv_conf",
                "join_timeout=120",
                "--local_addr",
                "127.0.0.1",
            ]
        else:
            meeting = ["--master_addr", "127.0.0.1", "--master_port", str(port)]
        cmd = torchrun(
            "--nnodes",
            "2",
            "--nproc_per_node",
            "1",
            "--node_rank",
            str(node_rank),
            *meeting,
            *train_args(tiny_model, output, 4, "pcgrad", 1, "--shard", shard),
        )
        procs.append(
            subprocess.Popen(
                cmd, cwd=ROOT, env=script_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
        )
    logs = []
    try:
        for proc in procs:
            logs.append(proc.communicate(timeout=TIMEOUT)[0])
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    for proc, log in zip(procs, logs):
        assert proc.returncode == 0, log[-5000:]
        assert "world size 2" in log and "master 127.0.0.1" in log, log[-2000:]
    if shard != "none":
        assert all("FSDPMultitaskBertModel" in log for log in logs)
    assert_same_weights(reference("pcgrad"), output)


# -- refusals and the pieces, in-process ------------------------------------------------------------------------


def _trainer(tmp_path):
    from mtbert import MultitaskBertConfig
    from mtbert.training.trainer import MultitaskTrainer
    from mtbert.training.training_args import MultitaskTrainingArguments

    # 16 wide, one layer, 512 positions, BERT's default dropout
    encoder = tiny_bert_config(
        hidden_size=16, num_hidden_layers=1, intermediate_size=16, max_position_embeddings=512,
        hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
    )  # fmt: skip
    model = sharded_train.MultitaskBertModel(MultitaskBertConfig(encoder=encoder, tasks=sharded_train.TASKS))
    args = MultitaskTrainingArguments(
        output_dir=str(tmp_path), strategy="pcgrad", use_cpu=True, report_to="none", save_strategy="no", max_steps=1
    )
    return MultitaskTrainer(model=model, args=args)


@pytest.mark.parametrize(
    ("deepspeed", "fsdp", "message"),
    [
        (None, SimpleNamespace(fsdp_version=1), "needs fsdp_version: 2"),
        (SimpleNamespace(zero_stage=3), None, "not ZeRO-3"),
        (None, SimpleNamespace(fsdp_version=2), None),
        (SimpleNamespace(zero_stage=2), None, None),
        (SimpleNamespace(zero_stage=1), None, None),
    ],
)
def test_what_is_refused_and_what_runs(tmp_path, monkeypatch, deepspeed, fsdp, message):
    from accelerate.utils import DistributedType

    trainer = _trainer(tmp_path)
    kind = DistributedType.DEEPSPEED if deepspeed else DistributedType.FSDP
    fake = SimpleNamespace(distributed_type=kind, state=SimpleNamespace(deepspeed_plugin=deepspeed, fsdp_plugin=fsdp))
    monkeypatch.setattr(trainer, "accelerator", fake)
    monkeypatch.setattr(trainer, "is_deepspeed_enabled", deepspeed is not None)
    monkeypatch.setattr(trainer, "is_fsdp_enabled", fsdp is not None)
    if message is None:
        trainer._check_aggregation_supported()
        return
    with pytest.raises(RuntimeError, match=message) as raised:
        trainer._check_aggregation_supported()
    text = str(raised.value)
    assert "\n" not in text and ("fsdp.yaml" in text)  # one line, naming what to use instead


def test_captured_task_gradients_and_their_surrogate_give_the_backward_update():
    """TaskGradients.capture (autograd.grad, no .grad touched) + linear_surrogate == TaskGradients.backward."""
    from mtbert.training.backward import TaskGradients

    torch.manual_seed(0)
    trunk = torch.nn.Linear(4, 4)
    heads = torch.nn.ModuleList([torch.nn.Linear(4, 1), torch.nn.Linear(4, 1)])
    x = torch.randn(6, 4)

    def losses():
        h = torch.tanh(trunk(x))
        return {"a": heads[0](h).pow(2).mean(), "b": (heads[1](h) - 1).abs().mean()}

    shared = list(trunk.parameters())
    expected = TaskGradients(shared, ["a", "b"])
    expected.backward(losses())
    expected.aggregate("pcgrad", generator=torch.Generator().manual_seed(1))
    want = {id(p): p.grad.clone() for p in [*shared, *heads.parameters()]}
    for p in [*shared, *heads.parameters()]:
        p.grad = None

    captured = TaskGradients(shared, ["a", "b"])
    captured.capture(losses(), list(heads.parameters()))
    assert all(p.grad is None for p in [*shared, *heads.parameters()])
    captured.aggregate("pcgrad", generator=torch.Generator().manual_seed(1))
    params = [*shared, *heads.parameters()]
    captured.linear_surrogate(params).backward()
    for p in params:
        torch.testing.assert_close(p.grad, want[id(p)], rtol=0, atol=1e-7)
