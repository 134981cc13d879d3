"""Per-parameter learning rates (heads, layer-wise decay) and the argument checks of issue 7's training options."""

from __future__ import annotations

import pytest

from mtbert.models.mtbert.configuration_mtbert import MultitaskConfigError
from mtbert.training.optimization import encoder_depth, parameter_learning_rates
from mtbert.training.training_args import MultitaskTrainingArguments


def test_encoder_depth_of_bert_parameter_names():
    assert encoder_depth("encoder.embeddings.word_embeddings.weight", 6) == 0
    assert encoder_depth("encoder.encoder.layer.0.attention.self.query.weight", 6) == 1
    assert encoder_depth("encoders.sts.encoder.layer.5.output.dense.bias", 6) == 6
    assert encoder_depth("encoder.pooler.dense.weight", 6) == 6


def test_layerwise_rates_decay_from_the_top_layer_down(make_model):
    model = make_model(["sst", "qqp"])  # 2 layers
    rates = parameter_learning_rates(model, 1e-4, head_learning_rate=1e-3, layerwise_lr_decay=0.5)
    assert rates["encoder.encoder.layer.1.attention.self.query.weight"] == pytest.approx(1e-4)
    assert rates["encoder.encoder.layer.0.attention.self.query.weight"] == pytest.approx(5e-5)
    assert rates["encoder.embeddings.word_embeddings.weight"] == pytest.approx(2.5e-5)
    assert rates["heads.sst.out_proj.weight"] == pytest.approx(1e-3)
    assert set(rates) == {name for name, _ in model.named_parameters()}
    flat = parameter_learning_rates(model, 1e-4)
    assert set(flat.values()) == {1e-4}


def test_option_mistakes_are_one_line_errors(tmp_path):
    common = dict(output_dir=str(tmp_path), report_to="none", use_cpu=True)
    with pytest.raises(MultitaskConfigError, match="layerwise_lr_decay"):
        MultitaskTrainingArguments(layerwise_lr_decay=1.5, **common)
    with pytest.raises(MultitaskConfigError, match="load_best_model_at_end"):
        MultitaskTrainingArguments(early_stopping_patience=2, **common)
    with pytest.raises(MultitaskConfigError, match="average_checkpoints must be"):
        MultitaskTrainingArguments(average_checkpoints=1, **common)
    with pytest.raises(MultitaskConfigError, match="save_strategy"):
        MultitaskTrainingArguments(average_checkpoints=2, save_strategy="no", **common)
    with pytest.raises(MultitaskConfigError, match="save_total_limit >= 3"):
        MultitaskTrainingArguments(average_checkpoints=3, save_strategy="epoch", save_total_limit=2, **common)
