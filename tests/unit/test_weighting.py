"""Loss-based task weightings (mtbert.training.weighting) and the UPGrad / Nash-MTL aggregators, each against a step
computed by
hand on fixed numbers; their options; and a trainer run that resumes with the learned weights of its checkpoint."""

from __future__ import annotations

import json
import math

import pytest
import torch

from mtbert.models.mtbert.configuration_mtbert import MultitaskConfigError
from mtbert.training.aggregators import check_aggregator_options, get_aggregator, nash_mtl_weights, upgrad_weights
from mtbert.training.weighting import WEIGHTINGS, build_weighting, check_weighting_options


def losses(**values):
    return {k: torch.tensor(v) for k, v in values.items()}


def as_floats(weights):
    return {k: float(v) for k, v in weights.items()}


# ------------------------------------------------------------------------------------------------ weightings


def test_static_weights_are_one():
    w = build_weighting("static", ["a", "b"])
    assert as_floats(w.weights(losses(a=3.0, b=0.1))) == {"a": 1.0, "b": 1.0}


def test_uncertainty_first_adam_step_by_hand():
    """s = 0: w = exp(0) = 1. d/ds_i (exp(-s_i) L_i + s_i) = 1 - L_i = (-1, 0.5); Adam's first step moves each s_i by
    lr * sign(gradient): s = (0.01, -0.01), so w = (exp(-0.01), exp(0.01)): the larger loss counts less."""
    w = build_weighting("uncertainty", ["a", "b"], {"lr": 0.01})
    assert as_floats(w.weights(losses(a=2.0, b=0.5))) == {"a": 1.0, "b": 1.0}
    w.update(losses(a=2.0, b=0.5))
    got = as_floats(w.weights(losses(a=2.0, b=0.5)))
    assert got["a"] == pytest.approx(math.exp(-0.01), rel=1e-9)
    assert got["b"] == pytest.approx(math.exp(0.01), rel=1e-9)


def test_uncertainty_round_robin_moves_only_the_task_of_the_step():
    w = build_weighting("uncertainty", ["a", "b"], {"lr": 0.1, "init": 0.5})
    w.update(losses(a=3.0))
    assert w.log_vars.tolist()[1] == 0.5 and w.adam.t.tolist() == [1.0, 0.0]
    assert w.log_vars.tolist()[0] == pytest.approx(0.6)  # 1 - exp(-0.5) * 3 < 0: s_a grows by lr


def test_dwa_by_hand():
    """period 1, temperature 2: losses (1, 2) then (0.5, 2): r = (0.5, 1), w = 2 softmax(r / 2)."""
    w = build_weighting("dwa", ["a", "b"], {"period": 1, "temperature": 2.0})
    w.update(losses(a=1.0, b=2.0))
    assert as_floats(w.weights(losses(a=1.0, b=1.0))) == {"a": 1.0, "b": 1.0}  # one period only: w = 1
    w.update(losses(a=0.5, b=2.0))
    denominator = math.exp(0.25) + math.exp(0.5)
    got = as_floats(w.weights(losses(a=1.0, b=1.0)))
    assert got["a"] == pytest.approx(2 * math.exp(0.25) / denominator, rel=1e-12)
    assert got["b"] == pytest.approx(2 * math.exp(0.5) / denominator, rel=1e-12)


def test_dwa_averages_over_its_period():
    w = build_weighting("dwa", ["a", "b"], {"period": 2, "temperature": 1.0})
    for a in (1.0, 3.0, 1.0, 1.0):  # period means: a 2 then 1, b 1 then 1
        w.update(losses(a=a, b=1.0))
    got = as_floats(w.weights(losses(a=1.0, b=1.0)))
    expected_a = 2 * math.exp(0.5) / (math.exp(0.5) + math.exp(1.0))
    assert got["a"] == pytest.approx(expected_a, rel=1e-12)


def test_famo_by_hand():
    """z = softmax(0) = (1/2, 1/2); losses (1, 3): w ∝ z / L = (1/2, 1/6), normalised (3/4, 1/4). Then the losses go
    from (1, 3) to (0.5, 3): delta = (log 2, 0), the softmax gradient z * (delta - z.delta) = (log 2 / 4, -log 2 / 4),
    and Adam's first step moves the logits by lr against its sign: (-0.025, 0.025); b, whose loss did not fall,
    gains weight."""
    w = build_weighting("famo", ["a", "b"], {"lr": 0.025, "gamma": 0.0})
    got = as_floats(w.weights(losses(a=1.0, b=3.0)))
    assert got["a"] == pytest.approx(0.75, rel=1e-7) and got["b"] == pytest.approx(0.25, rel=1e-7)
    w.update(losses(a=1.0, b=3.0))  # the first step only remembers its losses
    assert w.logits.tolist() == [0.0, 0.0]
    w.update(losses(a=0.5, b=3.0))
    assert w.logits.tolist() == pytest.approx([-0.025, 0.025], rel=1e-6)
    z = torch.softmax(torch.tensor([-0.025, 0.025], dtype=torch.float64), 0)
    got = as_floats(w.weights(losses(a=1.0, b=1.0)))
    assert got["b"] == pytest.approx(float(z[1]), rel=1e-6) and got["b"] > got["a"]


def test_famo_needs_every_task():
    w = build_weighting("famo", ["a", "b"])
    assert WEIGHTINGS["famo"].needs_all_tasks
    with pytest.raises(ValueError, match="every task"):
        w.update(losses(a=1.0))


def test_dbmtl_is_the_gradient_of_the_log_loss():
    w = build_weighting("dbmtl", ["a", "b"], {"eps": 1e-8})
    got = as_floats(w.weights(losses(a=2.0, b=0.5)))
    assert got == pytest.approx({"a": 0.5, "b": 2.0}, rel=1e-7)


@pytest.mark.parametrize("method", ["uncertainty", "dwa", "famo"])
def test_state_round_trips_through_json(method):
    w = build_weighting(method, ["a", "b"], {"period": 1} if method == "dwa" else None)
    for a, b in ((1.0, 2.0), (0.7, 1.9), (0.6, 1.5)):
        w.update(losses(a=a, b=b))
    copy = build_weighting(method, ["a", "b"], {"period": 1} if method == "dwa" else None)
    copy.load_state_dict(json.loads(json.dumps(w.state_dict())))
    w.update(losses(a=0.5, b=1.0))
    copy.update(losses(a=0.5, b=1.0))
    assert as_floats(copy.weights(losses(a=1.0, b=1.0))) == as_floats(w.weights(losses(a=1.0, b=1.0)))


@pytest.mark.parametrize(
    "method, options, match",
    [
        ("uncertainty", {"lr": 0}, r"weighting_options\.lr must be a number > 0"),
        ("uncertainty", {"temperature": 2}, r"weighting_options\.temperature: task_weighting uncertainty takes no"),
        ("dwa", {"period": 1.5}, r"weighting_options\.period must be a whole number"),
        ("famo", {"lr": float("nan")}, r"weighting_options\.lr"),
        ("dbmtl", {"epss": 1}, r"did you mean 'eps'"),
        ("dbmtl", [1], r"weighting_options must be a mapping"),
        ("uncertanty", None, r"task_weighting: 'uncertanty' is not one of .*did you mean 'uncertainty'"),
    ],
)
def test_weighting_options_are_refused_in_one_line_naming_the_key(method, options, match):
    with pytest.raises(ValueError, match=match) as error:
        check_weighting_options(method, options)
    assert "\n" not in str(error.value)


# ----------------------------------------------------------------------------------------------- aggregators


def test_nash_mtl_by_hand():
    """G alpha = 1 / alpha: orthogonal gradients |g| = (2, 1) give alpha = (1/2, 1); G = [[1, c], [c, 1]] gives
    alpha = 1 / sqrt(1 + c) each; G = [[4, -2], [-2, 2]] gives alpha_2 = sqrt(2) alpha_1, alpha_1 = 1/sqrt(4-2 sqrt 2)
    (from alpha_1 (4 alpha_1 - 2 alpha_2) = 1 = alpha_2 (2 alpha_2 - 2 alpha_1))."""
    torch.testing.assert_close(
        nash_mtl_weights(torch.diag(torch.tensor([4.0, 1.0]))).weights, torch.tensor([0.5, 1.0], dtype=torch.float64)
    )
    for c in (0.5, -0.3):
        got = nash_mtl_weights(torch.tensor([[1.0, c], [c, 1.0]])).weights
        torch.testing.assert_close(got, torch.full((2,), 1 / math.sqrt(1 + c), dtype=torch.float64))
    got = nash_mtl_weights(torch.tensor([[4.0, -2.0], [-2.0, 2.0]])).weights
    a1 = 1 / math.sqrt(4 - 2 * math.sqrt(2))
    torch.testing.assert_close(got, torch.tensor([a1, math.sqrt(2) * a1], dtype=torch.float64))


def test_nash_mtl_solves_the_bargaining_condition_and_clips():
    vectors = torch.tensor([[1.0, 2.0, 0.0, -1.0], [0.5, -1.0, 3.0, 0.0], [-2.0, 0.1, 0.3, 1.0]], dtype=torch.float64)
    gram = vectors @ vectors.T
    alpha = nash_mtl_weights(gram).weights
    torch.testing.assert_close(alpha * (gram @ alpha), torch.ones(3, dtype=torch.float64))
    update = alpha @ vectors
    assert float(update.norm()) == pytest.approx(math.sqrt(3))  # |d|^2 = alpha^T G alpha = T
    clipped = nash_mtl_weights(gram, max_norm=1.0).weights
    torch.testing.assert_close(clipped, alpha / math.sqrt(3))
    scaled = nash_mtl_weights(gram * 100.0).weights  # alpha scales as 1 / sqrt(G)
    torch.testing.assert_close(scaled, alpha / 10)


def test_nash_mtl_gives_a_zero_gradient_no_weight():
    got = nash_mtl_weights(torch.tensor([[4.0, 0.0], [0.0, 0.0]])).weights
    torch.testing.assert_close(got, torch.tensor([0.5, 0.0], dtype=torch.float64))


def test_upgrad_by_hand():
    """u = e_i / 2, v_i = argmin_{v >= u} v^T G v. G = [[4, -2], [-2, 2]]: for i = 1, v_2 free: -4 v_1 + 4 v_2 = 0,
    v = (1/2, 1/2); for i = 2, v_1 free: 8 v_1 - 4 v_2 = 0, v = (1/4, 1/2); w = (3/4, 1) (TorchJD adds 1e-4 * I to the
    trace-normalised G). Gradients that do not conflict are averaged: w = (1/2, 1/2)."""
    pytest.importorskip("torchjd")
    pytest.importorskip("quadprog")
    got = upgrad_weights(torch.tensor([[4.0, -2.0], [-2.0, 2.0]])).weights
    torch.testing.assert_close(got, torch.tensor([0.75, 1.0], dtype=torch.float64), atol=5e-4, rtol=0)
    got = upgrad_weights(torch.tensor([[1.0, 0.5], [0.5, 1.0]])).weights
    torch.testing.assert_close(got, torch.tensor([0.5, 0.5], dtype=torch.float64), atol=5e-4, rtol=0)
    vectors = torch.tensor([[1.0, 2.0, 0.0], [-1.5, -1.0, 1.0], [0.2, -2.0, 1.0]], dtype=torch.float64)
    update = upgrad_weights(vectors @ vectors.T).weights @ vectors
    assert bool(((vectors @ update) >= -1e-3).all())  # UPGrad's update conflicts with no task


@pytest.mark.parametrize(
    "name, options, match",
    [
        ("cagrad", {"c": -1}, r"aggregator_options\.c must be a number >= 0"),
        ("cagrad", {"cc": 0.4}, r"aggregator_options\.cc: aggregator cagrad takes no 'cc'.*did you mean 'c'"),
        ("nash_mtl", {"iterations": 0}, r"aggregator_options\.iterations must be a whole number >= 1"),
        ("pcgrad", {"c": 0.4}, r"aggregator pcgrad takes no 'c' \(it takes none\)"),
        ("upgrad", {"reg_eps": "x"}, r"aggregator_options\.reg_eps must be"),
    ],
)
def test_aggregator_options_are_refused_in_one_line_naming_the_key(name, options, match):
    with pytest.raises(ValueError, match=match):
        check_aggregator_options(name, options)


def test_aggregator_options_reach_the_aggregator():
    gram = torch.tensor([[4.0, -2.0], [-2.0, 2.0]])
    fn = get_aggregator("nash_mtl", **check_aggregator_options("nash_mtl", {"max_norm": 1.0}))
    torch.testing.assert_close(fn(gram).weights, nash_mtl_weights(gram, max_norm=1.0).weights)


# --------------------------------------------------------------------------------------------- the settings


def args(tmp_path, **kwargs):
    from mtbert.training.training_args import MultitaskTrainingArguments

    return MultitaskTrainingArguments(output_dir=str(tmp_path / "out"), use_cpu=True, report_to="none", **kwargs)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"task_weighting": "famo"}, r"task_weighting: famo compares every task's loss.*round_robin"),
        ({"strategy": "sum", "aggregator_options": {"c": 0.2}}, r"aggregator_options has no effect under strategy"),
        (
            {"strategy": "pcgrad", "aggregator": "cagrad", "aggregator_options": '{"c": "high"}'},
            r"aggregator_options\.c must be",
        ),
        ({"strategy": "pcgrad", "aggregator_options": "{c: 1"}, r"aggregator_options: .* is not a JSON mapping"),
        ({"task_weighting": "dwa", "weighting_options": '{"period": 0}'}, r"weighting_options\.period"),
        ({"task_weighting": "nope"}, r"task_weighting: 'nope' is not one of"),
    ],
)
def test_training_arguments_refuse_what_no_step_honours(tmp_path, kwargs, match):
    with pytest.raises(MultitaskConfigError, match=match) as error:
        args(tmp_path, **kwargs)
    assert "\n" not in str(error.value)


def test_training_arguments_read_json_options(tmp_path):
    got = args(
        tmp_path,
        strategy="pcgrad",
        aggregator="cagrad",
        aggregator_options='{"c": 0.3}',
        task_weighting="dwa",
        weighting_options='{"period": 3}',
    )
    assert got.aggregator_options == {"c": 0.3} and got.weighting_options == {"period": 3}


# ------------------------------------------------------------------------------------- trainer: resume


def test_resumed_run_continues_with_the_learned_weights(tokenizer, tmp_path):
    """uncertainty under strategy sum, a checkpoint at step 2 of 4: the checkpoint holds task_weighting.json, and the
    run resumed from it ends with the same learned log-variances (and model) as the run never interrupted."""
    from safetensors.torch import load_file

    from mtbert.training.trainer import MultitaskTrainer

    from random_tasks import make_data, make_model

    settings = dict(
        strategy="sum",
        task_weighting="uncertainty",
        weighting_options={"lr": 0.05},
        per_device_train_batch_size=8,
        seed=3,
        max_steps=4,
        disable_tqdm=True,
        save_strategy="steps",
        save_steps=2,
        logging_steps=1,
        learning_rate=1e-3,
    )

    def trainer(out):
        model = make_model(tokenizer)
        return MultitaskTrainer(model=model, args=args(out, **settings), train_dataset=make_data(tokenizer, model))

    full = trainer(tmp_path / "full")
    full.train()
    saved = json.loads((tmp_path / "full" / "out" / "checkpoint-2" / "task_weighting.json").read_text())
    assert saved["method"] == "uncertainty" and saved["log_vars"] != [0.0, 0.0, 0.0]
    final = full.task_weighting.state_dict()

    resumed = trainer(tmp_path / "resumed")
    resumed.train(resume_from_checkpoint=str(tmp_path / "full" / "out" / "checkpoint-2"))
    assert resumed.task_weighting.state_dict() == final
    a = load_file(str(tmp_path / "full" / "out" / "checkpoint-4" / "model.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "out" / "checkpoint-4" / "model.safetensors"))
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=0)
    logged = [h for h in resumed.state.log_history if "task_weight_sst" in h]
    assert logged and logged[-1]["task_weight_sst"] == pytest.approx(math.exp(-final["log_vars"][0]), abs=1e-6)
