"""mtbert.inference.loading: the one loader of saved models. A good folder loads (float32, eval mode, no pickle);
every broken
or foreign folder is refused with one line that names the path and the problem, before any weights are built."""

from __future__ import annotations

import json
import pickle

import pytest
import torch
from safetensors.torch import load_file, save_file

from mtbert import MultitaskBertConfig, MultitaskBertModel, MultitaskConfigError
from mtbert.inference.loading import (
    check_model_folder,
    is_mtbert_checkpoint,
    load_config,
    load_model,
    load_model_and_tokenizer,
    load_tokenizer,
)

from conftest import tiny_bert_config

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "film", "good", "bad", "is"]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A saved tiny model with a tiny tokenizer beside it."""
    from transformers import BertTokenizer

    folder = tmp_path_factory.mktemp("model")
    torch.manual_seed(0)
    config = MultitaskBertConfig(encoder=tiny_bert_config(len(VOCAB)).to_dict(), tasks={"sst": {}, "sts": {}})
    MultitaskBertModel(config).save_pretrained(folder)
    BertTokenizer(vocab={token: i for i, token in enumerate(VOCAB)}).save_pretrained(folder)
    return folder


def copy_of(saved, tmp_path, name="copy"):
    import shutil

    return shutil.copytree(saved, tmp_path / name)


def refused(match, call, *args, **kwargs) -> str:
    """The one-line message ``call`` raises."""
    with pytest.raises(MultitaskConfigError, match=match) as info:
        call(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def test_a_saved_folder_loads_in_float32_eval_mode_without_pickle(saved, monkeypatch):
    expected = load_file(str(saved / "model.safetensors"))

    def no_pickle(*args, **kwargs):
        raise AssertionError("a pickle was opened")

    monkeypatch.setattr(torch, "load", no_pickle)
    monkeypatch.setattr(pickle, "load", no_pickle)
    model, tokenizer = load_model_and_tokenizer(saved)
    assert isinstance(model, MultitaskBertModel) and not model.training
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    state = model.state_dict()
    for key, tensor in expected.items():
        assert torch.equal(state[key], tensor), key
    assert tokenizer("a good film")["input_ids"] == [2, 5, 7, 6, 3]
    assert set(load_config(saved).tasks) == {"sst", "sts"}
    assert is_mtbert_checkpoint(saved) and check_model_folder(str(saved)) == str(saved)


def test_dtype_and_device(saved):
    model = load_model(saved, device="cpu", dtype=torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert {p.device.type for p in model.parameters()} == {"cpu"}


def test_missing_file_and_empty_folders(saved, tmp_path):
    message = refused("does not exist", load_model, tmp_path / "nope")
    assert str(tmp_path / "nope") in message
    refused("does not exist", load_tokenizer, tmp_path / "nope")
    (tmp_path / "file.txt").write_text("x")
    refused("is a file", load_model, tmp_path / "file.txt")
    (tmp_path / "empty").mkdir()
    refused(r"has no config.json: not a saved mtbert model folder", load_config, tmp_path / "empty")
    assert not is_mtbert_checkpoint(tmp_path / "empty")


@pytest.mark.parametrize("text", ['{"model_type": "mtbert", "tasks": {', "", "not json at all"])
def test_config_json_that_is_not_json(saved, tmp_path, text):
    folder = copy_of(saved, tmp_path)
    (folder / "config.json").write_text(text)
    message = refused(
        r"config.json is not valid JSON \(line \d+, column \d+: .*\): the file is damaged", load_model, folder
    )
    assert str(folder) in message
    refused("is not valid JSON", is_mtbert_checkpoint, folder)  # not mistaken for a backbone folder


def test_a_backbone_folder_is_not_an_mtbert_model(tmp_path):
    tiny_bert_config().save_pretrained(tmp_path)
    assert not is_mtbert_checkpoint(tmp_path)
    refused(r"holds a bert model, not an mtbert model.*model_name_or_path", load_model, tmp_path)


def test_pickle_weights_are_refused(saved, tmp_path):
    folder = copy_of(saved, tmp_path)
    state = load_file(str(folder / "model.safetensors"))
    (folder / "model.safetensors").unlink()
    torch.save(state, folder / "pytorch_model.bin")
    message = refused(r"holds only pytorch_model.bin: mtbert loads safetensors only", load_model, folder)
    assert "safe_serialization=True" in message
    refused("safetensors only", load_config, folder)  # refused before anything else is read
    (folder / "pytorch_model.bin").unlink()
    refused(r"has no model.safetensors", load_model, folder)


@pytest.mark.parametrize("keep", [0.5, 0.01])
def test_truncated_weights(saved, tmp_path, keep, monkeypatch):
    folder = copy_of(saved, tmp_path)
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: int(len(data) * keep)])
    loads = []
    monkeypatch.setattr(MultitaskBertModel, "from_pretrained", lambda *a, **k: loads.append(a) or 1 / 0)
    refused(r"model.safetensors is unreadable .*: the weights are truncated or damaged", load_model, folder)
    assert not loads  # found from the header, before the model is built


def test_sharded_weights_load_and_a_missing_shard_is_named(saved, tmp_path):
    folder = copy_of(saved, tmp_path)
    state = load_file(str(folder / "model.safetensors"))
    (folder / "model.safetensors").unlink()
    keys = sorted(state)
    half = len(keys) // 2
    shards = {"model-00001-of-00002.safetensors": keys[:half], "model-00002-of-00002.safetensors": keys[half:]}
    for name, names in shards.items():
        save_file({k: state[k].contiguous() for k in names}, str(folder / name), metadata={"format": "pt"})
    index = {"metadata": {}, "weight_map": {k: name for name, names in shards.items() for k in names}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    model = load_model(folder)
    assert torch.equal(model.state_dict()[keys[0]], state[keys[0]])
    (folder / "model-00002-of-00002.safetensors").unlink()
    refused(r"the weight shard model-00002-of-00002.safetensors is missing", load_model, folder)


def test_weights_that_do_not_fit_the_config(saved, tmp_path):
    folder = copy_of(saved, tmp_path)
    state = load_file(str(folder / "model.safetensors"))
    head_keys = sorted(k for k in state if "sst" in k)
    assert head_keys
    del state[head_keys[0]]
    state["heads.nli.weight"] = torch.zeros(2)
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    message = refused(r"the weights in .* do not fit the model its config.json describes", load_model, folder)
    assert f"missing {head_keys[0]}" in message and "unexpected heads.nli.weight" in message


def test_a_tokenizer_that_cannot_be_loaded(saved, tmp_path):
    folder = copy_of(saved, tmp_path)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        (folder / name).unlink(missing_ok=True)
    refused(r"could not load the tokenizer of .*tokenizer.save_pretrained", load_tokenizer, folder)
    refused("could not load the tokenizer", load_model_and_tokenizer, folder)


def test_load_config_reads_no_weights(saved, monkeypatch):
    monkeypatch.setattr(MultitaskBertModel, "from_pretrained", lambda *a, **k: 1 / 0)
    assert load_config(str(saved)).model_type == "mtbert"


def test_local_paths_and_hub_ids(tmp_path, monkeypatch):
    from mtbert.inference.loading import is_local_path

    monkeypatch.chdir(tmp_path)
    (tmp_path / "outputs").mkdir()
    assert is_local_path("outputs") and is_local_path("./run") and is_local_path(str(tmp_path / "x"))
    assert is_local_path("runs/fast/seed1")  # two slashes: never a Hub id
    assert not is_local_path("bert-base-uncased") and not is_local_path("you/mtbert-sst-qqp-sts")
    refused("does not exist", load_config, "./outputs/missing")


def test_a_folder_with_another_pickle_file_names_it(saved, tmp_path):
    folder = copy_of(saved, tmp_path)
    (folder / "model.safetensors").rename(folder / "weights.PKL")  # the suffix test ignores case
    refused(r"holds only weights.PKL: mtbert loads safetensors only", load_model, folder)


def test_a_backbone_with_only_pickle_weights_is_refused(tmp_path, monkeypatch):
    """Backbone loading (``from_encoder_pretrained``, what train.py does) reads safetensors only: a folder with only
    ``pytorch_model.bin`` is one clear line, and nothing is unpickled."""
    from transformers import BertModel

    torch.manual_seed(0)
    backbone = BertModel(tiny_bert_config(len(VOCAB)))
    backbone.config.save_pretrained(tmp_path)
    torch.save(backbone.state_dict(), tmp_path / "pytorch_model.bin")

    def no_pickle(*args, **kwargs):
        raise AssertionError("a pickle was opened")

    monkeypatch.setattr(torch, "load", no_pickle)
    monkeypatch.setattr(pickle, "load", no_pickle)
    message = refused(
        r"holds only pytorch_model.bin, no model.safetensors: mtbert loads safetensors only",
        MultitaskBertModel.from_encoder_pretrained,
        str(tmp_path),
        tasks={"sst": {}},
    )
    assert str(tmp_path) in message and "save_pretrained" in message
    (tmp_path / "pytorch_model.bin").unlink()
    refused(
        r"has no model.safetensors weights",
        MultitaskBertModel.from_encoder_pretrained,
        str(tmp_path),
        tasks={"sst": {}},
    )


@pytest.mark.parametrize("bad", [None, 3, {"model": "x"}, ["a"], b"folder"], ids=repr)
def test_load_pipeline_refuses_bad_objects_in_one_line(bad):
    from mtbert.hub import load_pipeline

    with pytest.raises(ValueError, match=r"load_pipeline: model must be a saved mtbert folder") as info:
        load_pipeline(bad)
    assert "\n" not in str(info.value)


def test_load_pipeline_refuses_bad_paths_in_one_line(saved, tmp_path):
    """A file, a missing folder, a backbone folder, a config.json that is not JSON, truncated weights, pickle-only
    weights: each one line from the loader's checks, before transformers builds anything."""
    from mtbert.hub import load_pipeline

    (tmp_path / "file.txt").write_text("x")
    refused("is a file", load_pipeline, str(tmp_path / "file.txt"))
    refused("does not exist", load_pipeline, str(tmp_path / "missing"))
    tiny_bert_config().save_pretrained(tmp_path / "bert")
    refused("holds a bert model, not an mtbert model", load_pipeline, str(tmp_path / "bert"))
    folder = copy_of(saved, tmp_path, "notjson")
    (folder / "config.json").write_text("{")
    refused("is not valid JSON", load_pipeline, str(folder))
    folder = copy_of(saved, tmp_path, "truncated")
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    refused("the weights are truncated or damaged", load_pipeline, str(folder))
    folder = copy_of(saved, tmp_path, "pickled")
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    refused("holds only pytorch_model.bin", load_pipeline, str(folder))
