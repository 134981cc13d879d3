#!/usr/bin/env python
"""Hyperparameter search with Optuna over a training config: learning rate (the shared encoder's), the heads' learning
rate, the task-sampling temperature and the loss-based task weighting; objective eval_average (maximised).

    pip install 'mtbert[search]'
    python examples/search.py examples/configs/quickstart.yaml --n_trials 20
    python examples/search.py examples/configs/quickstart.yaml --n_trials 2 --max_steps 20 --max_eval_samples 64 \\
        --output_dir outputs/search_smoke

Every setting of examples/train.py is read as there (a config file, then flags); four more belong to the search:

    --n_trials N                 trials (default 10)
    --learning_rates LO,HI       log-uniform range of learning_rate (default 1e-5,2e-4)
    --head_learning_rates LO,HI  log-uniform range of head_learning_rate (default 1e-5,1e-3; "none": not searched)
    --temperatures LO,HI         uniform range of sampling_temperature (default 1,5; "none": not searched)
    --weightings A,B,...         task_weighting choices (default static,uncertainty,dwa,dbmtl, plus famo unless the
                                 strategy is round_robin; "none": not searched)

Each trial trains a fresh model (checkpoints, if saved, in <output_dir>/run-<trial>), scores the dev sets and reports
eval_average; <output_dir>/search_results.csv and search_results.md list every trial, best first, with its dev
metrics; the best trial's settings are logged at the end (train them with examples/train.py to keep the model).
"""

from __future__ import annotations

import json
import logging
import sys

from transformers import set_seed

from mtbert.cli.arguments import parse_args
from mtbert.cli.run import build_model, load_tokenized, load_tokenizer_and_tasks, main_guard, setup_logging
from mtbert.cli.search import SearchRecorder, multitask_search_space
from mtbert.models.mtbert.configuration_mtbert import MultitaskConfigError
from mtbert.training.trainer import MultitaskTrainer

logger = logging.getLogger("mtbert")

SEARCH_FLAGS = {
    "--n_trials": "10",
    "--learning_rates": "1e-5,2e-4",
    "--head_learning_rates": "1e-5,1e-3",
    "--temperatures": "1,5",
    "--weightings": "",
}


def split_search_flags(argv: list[str]) -> tuple[list[str], dict[str, str]]:
    """Take the search's own flags (``--flag value`` or ``--flag=value``) out of argv; the rest is train.py's."""
    rest, given = [], dict(SEARCH_FLAGS)
    i = 0
    while i < len(argv):
        name, eq, value = argv[i].partition("=")
        if name in SEARCH_FLAGS:
            if not eq:
                if i + 1 >= len(argv):
                    raise MultitaskConfigError(f"{name} needs a value")
                value = argv[i + 1]
                i += 1
            given[name] = value
        else:
            rest.append(argv[i])
        i += 1
    return rest, given


def _range(flag: str, text: str) -> tuple[float, float] | None:
    if text.strip().lower() == "none":
        return None
    try:
        low, high = (float(x) for x in text.split(","))
    except ValueError:
        raise MultitaskConfigError(f"{flag} must be LOW,HIGH (two numbers) or none, got {text!r}") from None
    if not 0 < low <= high:
        raise MultitaskConfigError(f"{flag} must satisfy 0 < LOW <= HIGH, got {text!r}")
    return low, high


def search_space(given: dict[str, str], strategy: str):
    from mtbert.training.weighting import WEIGHTINGS

    try:
        n_trials = int(given["--n_trials"])
    except ValueError:
        raise MultitaskConfigError(f"--n_trials must be a whole number, got {given['--n_trials']!r}") from None
    if n_trials < 1:
        raise MultitaskConfigError(f"--n_trials must be >= 1, got {n_trials}")
    text = given["--weightings"].strip()
    if not text:
        weightings = ["static", "uncertainty", "dwa", "dbmtl"] + (["famo"] if strategy != "round_robin" else [])
    elif text.lower() == "none":
        weightings = None
    else:
        weightings = [w.strip() for w in text.split(",") if w.strip()]
        unknown = [w for w in weightings if w not in WEIGHTINGS]
        if unknown:
            raise MultitaskConfigError(f"--weightings: {', '.join(unknown)} not among {', '.join(WEIGHTINGS)}")
        if strategy == "round_robin" and any(WEIGHTINGS[w].needs_all_tasks for w in weightings):
            raise MultitaskConfigError("--weightings: famo needs strategy sum or pcgrad, not round_robin")
    space = multitask_search_space(
        learning_rate=_range("--learning_rates", given["--learning_rates"]),
        head_learning_rate=_range("--head_learning_rates", given["--head_learning_rates"]),
        sampling_temperature=_range("--temperatures", given["--temperatures"]),
        task_weighting=weightings,
    )
    return n_trials, space


def run(argv: list[str]) -> dict:
    argv, given = split_search_flags(argv)
    model_args, data_args, training_args = parse_args(argv)
    n_trials, space = search_space(given, training_args.strategy)
    if training_args.learning_rate is None:
        raise MultitaskConfigError("--learning_rates needs a learning rate setting to search")
    setup_logging(training_args)
    set_seed(training_args.seed)
    tokenizer, tasks = load_tokenizer_and_tasks(model_args)
    data = load_tokenized(tasks, data_args, tokenizer, splits=("train", "dev"))
    dev = {t: d["dev"] for t, d in data.items() if "dev" in d}
    if not dev:
        raise MultitaskConfigError("the search scores each trial on the dev sets, and no task has one")

    def model_init(trial=None):
        model = build_model(model_args)
        model.config.max_seq_length = data_args.max_seq_length
        return model

    trainer = MultitaskTrainer(
        model_init=model_init,
        args=training_args,
        train_dataset={t: d["train"] for t, d in data.items() if "train" in d},
        eval_dataset=dev,
        processing_class=tokenizer,
        max_train_samples=data_args.train_caps(tasks),
    )
    recorder = SearchRecorder(trainer, metric="eval_average")
    best = trainer.hyperparameter_search(
        hp_space=space, compute_objective=recorder.objective, n_trials=n_trials, direction="maximize",
        backend="optuna",
    )  # fmt: skip
    if trainer.is_world_process_zero():
        csv_path, md_path = recorder.write(training_args.output_dir)
        logger.info("search results: %s, %s", csv_path, md_path)
    logger.info(
        "best trial %s: eval_average %.4f with %s", best.run_id, best.objective, json.dumps(best.hyperparameters)
    )
    return {"run_id": best.run_id, "objective": best.objective, "hyperparameters": best.hyperparameters}


def main(argv: list[str] | None = None):
    try:
        import optuna  # noqa: F401
    except ImportError:
        print("mtbert: error: examples/search.py needs Optuna: pip install 'mtbert[search]'", file=sys.stderr)
        raise SystemExit(2) from None
    return main_guard(run, list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    main()
