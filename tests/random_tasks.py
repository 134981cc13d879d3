"""Random sst/qqp/sts rows on a small vocabulary and a tiny model for them: the data of the trainer-step tests
(PCGrad against its by-hand reference, attention kernels, speed settings, weighting) and of ``sharded_train.py``."""

from __future__ import annotations

import datasets
import torch

from mtbert.data import tokenize_task
from mtbert.training.trainer import MultitaskTrainer
from mtbert.training.training_args import MultitaskTrainingArguments

from conftest import tiny_model

TASKS = {
    "sst": {"classifier_dropout": 0.0},
    "qqp": {"pair_encoding": "concat_sep", "classifier_dropout": 0.0},
    "sts": {"pair_encoding": "separate", "pooling": "mean", "classifier_dropout": 0.0},
}
WORDS = [
    *("good", "bad", "film", "plot", "great", "dull", "why", "how"),
    *("is", "the", "a", "an", "acting", "music", "long", "short"),
]


# 48-wide feed-forward and 512 positions: test_pcgrad_step's conflicting-gradient seed was found on these weights
ENCODER = {"intermediate_size": 48, "max_position_embeddings": 512}


def make_model(tokenizer, shared=True, seed=0):
    return tiny_model(TASKS, shared, vocab_size=tokenizer.vocab_size, seed=seed, encoder_overrides=ENCODER)


def make_data(tokenizer, model, n=16, seed=0):
    g = torch.Generator().manual_seed(seed)

    def sentence():
        k = int(torch.randint(3, 9, (1,), generator=g))
        return " ".join(WORDS[int(i)] for i in torch.randint(0, len(WORDS), (k,), generator=g))

    out = {}
    for task, spec in model.config.tasks.items():
        rows = {"id": [str(i) for i in range(n)], "text": [sentence() for _ in range(n)]}
        if spec["kind"] != "sentence_classification":
            rows["text_pair"] = [sentence() for _ in range(n)]
        if task == "sst":
            rows["label"] = torch.randint(0, 5, (n,), generator=g).tolist()
        elif task == "qqp":
            rows["label"] = torch.randint(0, 2, (n,), generator=g).tolist()
        else:
            rows["label"] = (torch.rand(n, generator=g) * 5).tolist()
        out[task] = tokenize_task(datasets.Dataset.from_dict(rows), tokenizer, spec, 24)
    return out


def trainer_for(model, data, tmp_path, prepare_optimizer: bool = True, **args):
    """A MultitaskTrainer on CPU with quiet defaults (``args`` override them); ``prepare_optimizer`` builds the
    optimizer and a 2-step schedule at once, for tests that take steps by hand instead of calling ``train()``."""
    settings = dict(
        output_dir=str(tmp_path),
        strategy="pcgrad",
        per_device_train_batch_size=8,
        report_to="none",
        use_cpu=True,
        seed=3,
        max_steps=2,
        disable_tqdm=True,
        save_strategy="no",
    )
    settings.update(args)
    trainer = MultitaskTrainer(model=model, args=MultitaskTrainingArguments(**settings), train_dataset=data)
    if prepare_optimizer:
        trainer.create_optimizer_and_scheduler(num_training_steps=2)
    return trainer


def first_batch(trainer):
    return next(iter(trainer.get_train_dataloader()))
