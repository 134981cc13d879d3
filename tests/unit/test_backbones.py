"""Every encoder family mtbert supports (issue 15), on tiny random configurations built in code (no downloads):
BERT, RoBERTa, XLM-RoBERTa, MPNet, DeBERTa-v2 (v3 style), ELECTRA, DistilBERT, ALBERT and ModernBERT, each with a
tokenizer of its own family.

Per family: the attention implementation chosen, a pair joined the tokenizer's own way, every head kind's forward,
loss and backward, padding (MEAN ignores it, CLS is the first token), segment embeddings used only where they exist,
save and reload, building from a saved backbone folder, one encoder per task, layer-wise learning-rate decay,
SMART's embedding noise, activation (gradient) checkpointing, two MultitaskTrainer steps, and (in one subprocess for
all families) the remote-code model and pipeline where mtbert cannot be imported.

The dropout override is checked under each family's own key names, and the pipeline's default length against the
positions of families that number them from ``pad_token_id + 1`` (RoBERTa, XLM-R, MPNet).
"""

from __future__ import annotations

import json
import textwrap
import warnings

import datasets
import pytest
import torch
from transformers import AutoTokenizer

from mtbert import MultitaskBertConfig, MultitaskBertModel
from mtbert.data import tokenize_batch, tokenize_task
from mtbert.data.collators import TaskCollator
from mtbert.hub import load_pipeline
from mtbert.models.mtbert.configuration_mtbert import MultitaskConfigError
from mtbert.models.mtbert.modeling_mtbert import encoder_class, has_segment_embeddings
from mtbert.training.optimization import parameter_learning_rates
from mtbert.training.trainer import MultitaskTrainer
from mtbert.training.training_args import MultitaskTrainingArguments

from backbone_fixtures import (
    ALL_HEADS,
    BY_NAME,
    FAMILIES,
    LAYERS,
    PAIRS,
    SENTENCES,
    encoder_config_of,
    tokenizer_of,
)
from without_mtbert import run_without_mtbert

NAMES = [family.name for family in FAMILIES]
SEGMENTS = [family.name for family in FAMILIES if family.segments]
NO_SEGMENTS = [family.name for family in FAMILIES if not family.segments]
MAX_LENGTH = 40


def make_model(name: str, tasks=None, seed: int = 0, **config_kwargs) -> MultitaskBertModel:
    torch.manual_seed(seed)
    config = MultitaskBertConfig(encoder=encoder_config_of(name).to_dict(), tasks=tasks or ALL_HEADS, **config_kwargs)
    return MultitaskBertModel(config)


def label_of(spec, i: int):
    if spec["kind"] == "sentence_classification":
        return i % spec["num_labels"]
    if spec["kind"] == "pair_classification":
        return i % 2
    return float(i % 6)  # a similarity score in [0, 5]


def batch_of(name: str, spec, rows=None, max_length: int = MAX_LENGTH, labels: bool = True):
    """Model inputs for ``rows`` (sentences or pairs; the fixture's by default), through mtbert's own tokenization
    and collator."""
    tokenizer = tokenizer_of(name)
    if spec["kind"] == "sentence_classification":
        rows = SENTENCES if rows is None else rows
        columns = {"text": list(rows)}
    else:
        rows = PAIRS if rows is None else rows
        columns = {"text": [a for a, _ in rows], "text_pair": [b for _, b in rows]}
    encoded = tokenize_batch(columns, tokenizer, spec, max_length)
    examples = [dict(zip(encoded, values)) for values in zip(*encoded.values())]
    if labels:
        for i, example in enumerate(examples):
            example["label"] = label_of(spec, i)
    return TaskCollator(pad_token_id=tokenizer.pad_token_id)(examples)


def run_task(model, task: str, batch):
    return model(task=task, **batch)


def ids(name: str, tokens: list[str]) -> list[int]:
    return tokenizer_of(name).convert_tokens_to_ids(tokens)


# ---------------------------------------------------------------------------------------------------------------
# The backbone: attention, segment embeddings, tokenization of pairs
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_attention_implementation_is_chosen_per_family(name):
    family = BY_NAME[name]
    model = make_model(name, {"sst": ALL_HEADS["sst"]})
    assert model.encoder.config._attn_implementation == family.attn  # SDPA where supported, else eager
    assert has_segment_embeddings(model.encoder) == family.segments
    eager = make_model(name, {"sst": ALL_HEADS["sst"]}, encoder_attn_implementation="eager")
    assert eager.encoder.config._attn_implementation == "eager"  # an explicit setting wins
    if family.attn == "eager":
        with pytest.raises(MultitaskConfigError, match="does not support it"):
            make_model(name, {"sst": ALL_HEADS["sst"]}, encoder_attn_implementation="sdpa")


@pytest.mark.parametrize("name", NAMES)
def test_pairs_are_joined_the_tokenizers_own_way(name):
    family = BY_NAME[name]
    tokenizer = tokenizer_of(name)
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    first, second = PAIRS[1]
    a = tokenizer(first, add_special_tokens=False)["input_ids"]
    b = tokenizer(second, add_special_tokens=False)["input_ids"]
    between = ids(name, family.between)
    assert sep in between and None not in between

    joined = tokenize_batch({"text": [first], "text_pair": [second]}, tokenizer, ALL_HEADS["concat_sep"], 64)
    assert joined["input_ids"][0] == [cls, *a, *between, *b, sep]  # [SEP] for BERT, </s></s> for RoBERTa/MPNet
    dual = tokenize_batch({"text": [first], "text_pair": [second]}, tokenizer, ALL_HEADS["dual"], 64)
    assert dual["input_ids"][0] == joined["input_ids"][0]
    assert dual["pair_input_ids_a"][0] == [cls, *a, sep] and dual["pair_input_ids_b"][0] == [cls, *b, sep]

    nosep = tokenize_batch({"text": [first], "text_pair": [second]}, tokenizer, ALL_HEADS["concat_nosep"], 64)
    assert nosep["input_ids"][0] == [cls, *a, *b, sep]  # no separator between the sentences
    short = tokenize_batch({"text": [first], "text_pair": [second]}, tokenizer, ALL_HEADS["concat_nosep"], 12)
    row = short["input_ids"][0]
    assert len(row) == 12 and row[0] == cls and row[-1] == sep and sep not in row[1:-1]


# ---------------------------------------------------------------------------------------------------------------
# Every head: forward, loss, backward
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_every_head_trains(name):
    model = make_model(name).train()
    encoder = dict(model.encoder.named_parameters())
    for task, spec in model.config.tasks.items():
        model.zero_grad(set_to_none=True)
        batch = batch_of(name, spec)
        out = run_task(model, task, batch)
        rows = batch["input_ids"].shape[0]
        expected = (rows, spec["num_labels"]) if spec["kind"] == "sentence_classification" else (rows,)
        assert tuple(out.logits.shape) == expected, task
        assert out.loss.ndim == 0 and torch.isfinite(out.loss), task
        out.loss.backward()
        for param_name, param in encoder.items():
            assert param.grad is not None, (task, param_name)
            assert torch.isfinite(param.grad).all(), (task, param_name)
            assert param.grad.abs().sum() > 0, (task, param_name)  # every encoder parameter takes part
        for param_name, param in model.heads[task].named_parameters():
            assert param.grad is not None and torch.isfinite(param.grad).all(), (task, param_name)
            if spec["regression_loss"] != "mse" and param_name.endswith("out_proj.bias"):
                continue  # a ranking loss (CoSENT) does not see a shift of every score: no gradient for the bias
            assert param.grad.abs().sum() > 0, (task, param_name)


@pytest.mark.parametrize("name", NAMES)
def test_padding_is_ignored_and_cls_is_the_first_token(name):
    model = make_model(name).eval()
    long_pair = ("two dogs play on the grass , the cast was not good .", "what is the best way to learn python ?")
    with torch.no_grad():
        for task in ("sst", "cosine", "concat_nosep", "dual"):
            spec = model.config.tasks[task]
            short = [SENTENCES[1]] if task == "sst" else [PAIRS[2]]
            long = [SENTENCES[2]] if task == "sst" else [long_pair]
            alone = run_task(model, task, batch_of(name, spec, short, labels=False))
            padded_batch = batch_of(name, spec, short + long, labels=False)
            assert (padded_batch["attention_mask"][0] == 0).any(), task  # the short row really is padded
            padded = run_task(model, task, padded_batch)
            torch.testing.assert_close(padded.embeddings[0], alone.embeddings[0], atol=2e-5, rtol=1e-4, msg=task)
            torch.testing.assert_close(padded.logits[0], alone.logits[0], atol=2e-5, rtol=1e-4, msg=task)
        batch = batch_of(name, model.config.tasks["sst"], labels=False)
        hidden = model.encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        torch.testing.assert_close(run_task(model, "sst", batch).embeddings, hidden[:, 0])  # CLS: the first token


# ---------------------------------------------------------------------------------------------------------------
# Segment embeddings only where the backbone has them
# ---------------------------------------------------------------------------------------------------------------

SEGMENT_TASK = {"pair": {"kind": "pair_classification", "pair_encoding": "concat_sep", "use_token_type_ids": True}}


@pytest.mark.parametrize("name", NO_SEGMENTS)
def test_token_type_ids_are_refused_without_segment_embeddings(name):
    with pytest.raises(MultitaskConfigError, match="use_token_type_ids needs a backbone with segment embeddings"):
        make_model(name, SEGMENT_TASK)


@pytest.mark.parametrize("name", SEGMENTS)
def test_token_type_ids_reach_backbones_with_segment_embeddings(name):
    with_segments = make_model(name, SEGMENT_TASK).eval()
    without = make_model(name, {"pair": {**SEGMENT_TASK["pair"], "use_token_type_ids": False}}).eval()
    batch = batch_of(name, with_segments.config.tasks["pair"], labels=False)
    assert batch["token_type_ids"].max() == 1
    zeros = {**batch, "token_type_ids": torch.zeros_like(batch["token_type_ids"])}
    with torch.no_grad():
        used = run_task(with_segments, "pair", batch).logits
        assert not torch.allclose(used, run_task(with_segments, "pair", zeros).logits)
        ignored = run_task(without, "pair", batch).logits
        torch.testing.assert_close(ignored, run_task(without, "pair", zeros).logits)


@pytest.mark.parametrize("name", NO_SEGMENTS)
def test_token_type_ids_never_reach_backbones_without_them(name):
    model = make_model(name, {"pair": ALL_HEADS["concat_sep"]}).eval()
    batch = batch_of(name, model.config.tasks["pair"], labels=False)
    ones = {**batch, "token_type_ids": torch.ones_like(batch["input_ids"])}  # out of range for type_vocab_size <= 1
    with torch.no_grad():
        torch.testing.assert_close(run_task(model, "pair", ones).logits, run_task(model, "pair", batch).logits)


# ---------------------------------------------------------------------------------------------------------------
# Save and reload
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_save_and_reload(name, tmp_path):
    family = BY_NAME[name]
    model = make_model(name).eval()
    model.save_pretrained(tmp_path)
    tokenizer_of(name).save_pretrained(tmp_path)
    reloaded = MultitaskBertModel.from_pretrained(tmp_path).eval()
    assert reloaded.encoder.config.model_type == model.encoder.config.model_type
    assert reloaded.encoder.config._attn_implementation == family.attn
    with torch.no_grad():
        for task, spec in model.config.tasks.items():
            batch = batch_of(name, spec, labels=False)
            torch.testing.assert_close(run_task(reloaded, task, batch).logits, run_task(model, task, batch).logits)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    assert type(tokenizer).__name__ == type(tokenizer_of(name)).__name__
    assert tokenizer(*PAIRS[0])["input_ids"] == tokenizer_of(name)(*PAIRS[0])["input_ids"]


# ---------------------------------------------------------------------------------------------------------------
# From a pretrained backbone folder (what examples/train.py --model_name_or_path does), one encoder per task
# ---------------------------------------------------------------------------------------------------------------


def save_backbone(name: str, folder) -> torch.nn.Module:
    config = encoder_config_of(name)
    torch.manual_seed(1)
    backbone = encoder_class(config)(config)
    backbone.save_pretrained(folder)
    return backbone


@pytest.mark.parametrize("name", NAMES)
def test_from_encoder_pretrained_loads_the_backbone(name, tmp_path):
    backbone = save_backbone(name, tmp_path)
    tasks = {"sst": ALL_HEADS["sst"], "pair": ALL_HEADS["concat_nosep"]}
    model = MultitaskBertModel.from_encoder_pretrained(str(tmp_path), tasks=tasks)
    assert model.encoder.config._attn_implementation == BY_NAME[name].attn
    state = backbone.state_dict()
    loaded = model.encoder.state_dict()
    assert set(loaded) <= set(state)
    for key, value in loaded.items():
        assert torch.equal(value, state[key]), key


@pytest.mark.parametrize("name", NAMES)
def test_dropout_override_reaches_every_family(name, tmp_path):
    save_backbone(name, tmp_path)
    model = MultitaskBertModel.from_encoder_pretrained(
        str(tmp_path),
        tasks={"sst": ALL_HEADS["sst"]},
        encoder_kwargs={"hidden_dropout_prob": 0.3, "attention_probs_dropout_prob": 0.2},
    )
    hidden_keys, attention_keys = BY_NAME[name].dropout_keys
    for key in hidden_keys:
        assert getattr(model.encoder.config, key) == pytest.approx(0.3), key
    for key in attention_keys:
        assert getattr(model.encoder.config, key) == pytest.approx(0.2), key


@pytest.mark.parametrize("name", NAMES)
def test_one_encoder_per_task(name):
    family = BY_NAME[name]
    tasks = {"sst": ALL_HEADS["sst"], "pair": ALL_HEADS["cosine"]}
    model = make_model(name, tasks, shared_encoder=False).eval()
    assert model.encoders["sst"] is not model.encoders["pair"]
    with torch.no_grad():
        for task in tasks:
            assert torch.isfinite(run_task(model, task, batch_of(name, model.config.tasks[task])).loss)
    if family.per_layer:
        rates = parameter_learning_rates(model, 1e-3, layerwise_lr_decay=0.5)
        top = family.layer_prefix.format(LAYERS - 1).replace("encoder.", "encoders.pair.", 1)
        embeddings = family.embeddings_prefix.replace("encoder.", "encoders.pair.", 1)
        assert all_equal([r for n, r in rates.items() if n.startswith(top)], 1e-3)
        assert all_equal([r for n, r in rates.items() if n.startswith(embeddings)], 1e-3 * 0.5**LAYERS)


# ---------------------------------------------------------------------------------------------------------------
# Layer-wise learning-rate decay, SMART, gradient checkpointing
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_layerwise_learning_rate_decay_finds_layers_and_embeddings(name):
    family = BY_NAME[name]
    model = make_model(name, {"sst": ALL_HEADS["sst"], "pair": ALL_HEADS["concat_sep"]})
    flat = parameter_learning_rates(model, 1e-3, head_learning_rate=1e-2)  # no decay: fine for every family
    assert {r for n, r in flat.items() if not n.startswith("heads.")} == {1e-3}
    if not family.per_layer:
        with pytest.raises(MultitaskConfigError, match="layerwise_lr_decay"):
            parameter_learning_rates(model, 1e-3, layerwise_lr_decay=0.5)
        return
    rates = parameter_learning_rates(model, 1e-3, head_learning_rate=1e-2, layerwise_lr_decay=0.5)
    assert set(rates) == {n for n, _ in model.named_parameters()}
    layers = model.config.encoder_config.num_hidden_layers
    for i in range(layers):
        prefix = family.layer_prefix.format(i)
        in_layer = [r for n, r in rates.items() if n.startswith(prefix)]
        assert in_layer and all_equal(in_layer, 1e-3 * 0.5 ** (layers - 1 - i)), (prefix, set(in_layer))
    embeddings = [r for n, r in rates.items() if n.startswith(family.embeddings_prefix)]
    assert embeddings and all_equal(embeddings, 1e-3 * 0.5**layers)
    for param_name, rate in rates.items():  # every encoder parameter sits where the family's layout says
        if param_name.startswith("heads."):
            continue
        if param_name.startswith((family.embeddings_prefix, *family.below_layers)):
            assert rate == pytest.approx(1e-3 * 0.5**layers), param_name
        elif param_name.startswith(family.above_layers):
            assert rate == pytest.approx(1e-3), param_name
        else:
            assert any(param_name.startswith(family.layer_prefix.format(i)) for i in range(layers)), param_name
    word_embeddings = model.get_input_embeddings().weight
    name_of = {id(p): n for n, p in model.named_parameters()}
    assert rates[name_of[id(word_embeddings)]] == pytest.approx(1e-3 * 0.5**layers)  # the input embeddings lowest
    encoder_rates = [r for n, r in rates.items() if not n.startswith("heads.")]
    assert min(encoder_rates) == pytest.approx(1e-3 * 0.5**layers) and max(encoder_rates) == pytest.approx(1e-3)
    assert all_equal([r for n, r in rates.items() if n.startswith("heads.")], 1e-2)


def all_equal(values, expected) -> bool:
    return all(value == pytest.approx(expected) for value in values)


SMART_TASKS = {
    "sst": {**ALL_HEADS["sst"], "smart_alpha": 1.0, "smart_noise": 0.1, "smart_step_size": 0.1},
    "pair": {**ALL_HEADS["dual"], "smart_alpha": 1.0, "smart_noise": 0.1, "smart_step_size": 0.1},
}


@pytest.mark.parametrize("name", NAMES)
def test_smart_noise_reaches_the_input_embeddings(name):
    smart = make_model(name, SMART_TASKS).train()
    plain = make_model(name, {t: {**s, "smart_alpha": 0.0} for t, s in SMART_TASKS.items()}).train()
    calls = []
    hook = smart.get_input_embeddings().register_forward_hook(lambda module, inputs, output: calls.append(1))
    for task, spec in smart.config.tasks.items():
        batch = batch_of(name, spec)
        calls.clear()
        loss = run_task(smart, task, batch).loss
        clean = run_task(plain, task, batch).loss
        assert loss > clean + 1e-6, task  # the smoothness term is positive: the noise moved the predictions
        assert len(calls) >= 3, task  # the clean pass and SMART's two perturbed passes
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in smart.encoder.parameters() if p.grad is not None)
        smart.zero_grad()
    hook.remove()


def enable_checkpointing(model) -> None:
    """As the Trainer does (``activation_checkpointing_enable`` with its keyword arguments; older transformers:
    ``gradient_checkpointing_enable``)."""
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(
            activation_checkpointing_kwargs={"use_reentrant": False}, every_n_layers=1, offload=False
        )
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


@pytest.mark.parametrize("name", NAMES)
def test_gradient_checkpointing_works_or_is_refused(name):
    family = BY_NAME[name]
    tasks = {"pair": ALL_HEADS["concat_sep"]}
    model = make_model(name, tasks).train()
    if not family.checkpointing:
        with pytest.raises(MultitaskConfigError, match=r"gradient_checkpointing: .* does not support it"):
            enable_checkpointing(model)
        with pytest.raises(MultitaskConfigError, match="does not support it"), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            model.gradient_checkpointing_enable()  # the deprecated name too
        return
    batch = batch_of(name, model.config.tasks["pair"])
    run_task(model, "pair", batch).loss.backward()
    expected = {n: p.grad.clone() for n, p in model.named_parameters()}
    checkpointed = make_model(name, tasks).train()
    enable_checkpointing(checkpointed)
    layers = [m for m in checkpointed.encoder.modules() if getattr(m, "gradient_checkpointing", False)]
    assert layers, "no encoder module was switched to checkpointing"
    run_task(checkpointed, "pair", batch).loss.backward()
    for n, p in checkpointed.named_parameters():
        torch.testing.assert_close(p.grad, expected[n], atol=1e-5, rtol=1e-4, msg=n)


TRAIN_TASKS = {"sst": ALL_HEADS["sst"], "pair": ALL_HEADS["concat_nosep"], "sts": ALL_HEADS["sts"]}


@pytest.mark.parametrize("name", NAMES)
def test_trainer_steps_with_layerwise_decay_and_checkpointing(name, tmp_path):
    """Two MultitaskTrainer steps as examples/train.py takes them: every task, layer-wise decay, head learning rate,
    activation checkpointing where the family has it (ALBERT: the decay is refused before any step)."""
    family = BY_NAME[name]
    tokenizer = tokenizer_of(name)
    model = make_model(name, TRAIN_TASKS)
    data = {}
    for task, spec in model.config.tasks.items():
        if task == "sst":
            columns = {"text": SENTENCES}
        else:
            columns = {"text": [a for a, _ in PAIRS], "text_pair": [b for _, b in PAIRS]}
        columns["label"] = [label_of(spec, i) for i in range(len(columns["text"]))]
        data[task] = tokenize_task(datasets.Dataset.from_dict(columns), tokenizer, spec, MAX_LENGTH)
    args = MultitaskTrainingArguments(
        output_dir=str(tmp_path),
        max_steps=2,
        per_device_train_batch_size=4,
        learning_rate=1e-3,
        head_learning_rate=1e-2,
        layerwise_lr_decay=0.5,
        activation_checkpointing=family.checkpointing,
        report_to="none",
        save_strategy="no",
        disable_tqdm=True,
        use_cpu=True,
    )
    trainer = MultitaskTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer)
    if not family.per_layer:
        with pytest.raises(MultitaskConfigError, match="layerwise_lr_decay"):
            trainer.train()
        return
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer.train()
    checkpointed = any(getattr(m, "gradient_checkpointing", False) for m in model.encoder.modules())
    assert checkpointed == family.checkpointing
    rates = {group["initial_lr"] for group in trainer.optimizer.param_groups}  # before the schedule
    assert max(rates) == pytest.approx(1e-2) and min(rates) == pytest.approx(1e-3 * 0.5**LAYERS)
    word_embeddings = model.get_input_embeddings().weight
    name_of = {id(p): n for n, p in model.named_parameters()}
    assert not torch.equal(word_embeddings.detach(), before[name_of[id(word_embeddings)]])
    top = [n for n in before if n.startswith(family.layer_prefix.format(LAYERS - 1))]
    assert any(not torch.equal(dict(model.named_parameters())[n].detach(), before[n]) for n in top)


@pytest.mark.parametrize("name", NAMES)
def test_pipeline_default_length_fits_the_positions(name):
    model = make_model(name, {"sst": ALL_HEADS["sst"]}).eval()
    pipe = load_pipeline(model, tokenizer_of(name))
    long_text = " ".join(["the film was good ."] * 30)  # longer than the 64 positions
    assert len(tokenizer_of(name)(long_text)["input_ids"]) > 64
    (out,) = pipe(long_text, task="sst")  # a string: a one-item list, as the stock pipeline answers
    assert set(out) == {"label", "score"}


# ---------------------------------------------------------------------------------------------------------------
# Remote code: the saved model and its pipeline in an interpreter where mtbert cannot be imported (one for all)
# ---------------------------------------------------------------------------------------------------------------

REMOTE_SCRIPT = textwrap.dedent(
    """
    import json
    import sys

    from transformers import AutoModel, pipeline

    folders, inputs = json.load(open(sys.argv[1]))
    out = {}
    for name, folder in folders.items():
        model = AutoModel.from_pretrained(folder, trust_remote_code=True)
        pipe = pipeline(model=folder, trust_remote_code=True, device=-1)
        out[name] = {
            "model_class": type(model).__module__ + "." + type(model).__name__,
            "encoder_class": type(model.encoder).__name__,
            "attn": model.encoder.config._attn_implementation,
            "tokenizer_class": type(pipe.tokenizer).__name__,
            "outputs": {task: pipe(rows, task=task, batch_size=2) for task, rows in inputs.items()},
        }
    out["mtbert_loaded"] = any(m == "mtbert" or m.startswith("mtbert.") for m in sys.modules)
    json.dump(out, open(sys.argv[2], "w"))
    """
)


def pipeline_inputs(tasks) -> dict:
    return {
        task: SENTENCES
        if spec["kind"] == "sentence_classification"
        else [{"text": a, "text_pair": b} for a, b in PAIRS]
        for task, spec in tasks.items()
    }


@pytest.fixture(scope="module")
def remote_run(tmp_path_factory):
    """Every family saved (model and tokenizer), its expected pipeline outputs in-process, and what one subprocess
    without mtbert makes of all of them."""
    root = tmp_path_factory.mktemp("remote")
    folders, expected = {}, {}
    inputs = pipeline_inputs(ALL_HEADS)
    for name in NAMES:
        model = make_model(name).eval()
        folder = root / name
        model.save_pretrained(folder)
        tokenizer_of(name).save_pretrained(folder)
        folders[name] = str(folder)
        pipe = load_pipeline(model, tokenizer_of(name))
        expected[name] = {task: pipe(rows, task=task, batch_size=2) for task, rows in inputs.items()}
    (root / "in.json").write_text(json.dumps([folders, inputs]))
    done = run_without_mtbert(REMOTE_SCRIPT, [root / "in.json", root / "out.json"], root)
    assert done.returncode == 0, done.stderr[-3000:]
    return expected, json.loads((root / "out.json").read_text())


@pytest.mark.parametrize("name", NAMES)
def test_remote_code_model_and_pipeline_without_mtbert(remote_run, name):
    expected, out = remote_run
    assert out["mtbert_loaded"] is False
    got = out[name]
    assert got["model_class"].startswith("transformers_modules.")
    assert got["model_class"].endswith("modeling_mtbert.MultitaskBertModel")
    assert got["encoder_class"] == type(make_model(name, {"sst": ALL_HEADS["sst"]}).encoder).__name__
    assert got["attn"] == BY_NAME[name].attn
    assert got["tokenizer_class"] == type(tokenizer_of(name)).__name__
    for task, want in expected[name].items():
        have = got["outputs"][task]
        assert len(have) == len(want), task
        for g, w in zip(have, want):
            assert g.get("label") == w.get("label"), task
            assert g["score"] == pytest.approx(w["score"], abs=1e-5), task
