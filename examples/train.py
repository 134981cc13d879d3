#!/usr/bin/env python
"""Train one multitask BERT on SST, QQP and STS (or your own tasks): a run_glue-style recipe over mtbert's library.

    accelerate launch examples/train.py examples/configs/quickstart.yaml
    python examples/train.py examples/configs/quickstart.yaml --learning_rate 3e-5 --tasks.sts.pooling cls
    torchrun --nproc_per_node 2 examples/train.py examples/configs/quickstart.yaml
    python examples/train.py config.yaml --model_name_or_path outputs/run --do_eval    # score only, no training

The config file sets defaults, flags override them (TrainingArguments flags work; those the multitask trainer
cannot honour are refused). As in run_glue, --do_train/--do_eval/--do_predict pick the phases; with none of them
the script trains, scores every dev set, writes <output_dir>/metrics.json, the model and tokenizer, its model
card README.md (as a push would upload it; every checkpoint gets one too), and the leaderboard files in
<output_dir>/predictions/ (tasks with a test split).

An --output_dir that already holds a finished run (metrics.json, model weights or predictions/) is refused before
anything loads, unless --overwrite_output_dir true (replace it) or --resume_from_checkpoint (continue it); scoring
a saved model in its own folder (--model_name_or_path and --output_dir the same) replaces only its metrics.json and
predictions/. The final results are written into <parent>/.<name>.incomplete and moved into <output_dir> together
at the end, so a run that fails leaves the folder as it was (checkpoints are written in place by the Trainer).
"""

import json
import logging
import os

import torch
from transformers import set_seed

from mtbert.cli.arguments import parse_args
from mtbert.cli.run import (
    build_model,
    check_output_dir,
    count_parameters,
    earlier_results,
    load_tokenized,
    load_tokenizer_and_tasks,
    main_guard,
    push_final_model,
    remove_earlier_checkpoints,
    save_model,
    setup_logging,
    use_all_cores_when_alone,
    write_leaderboard_files,
    write_metrics,
    write_model_card,
)
from mtbert.hub import examples_from_data
from mtbert.hub.publish import discard, fresh_staging_dir, publish, staging_dir
from mtbert.training.callbacks import ModelCardCallback
from mtbert.training.checkpoints import resolve_resume
from mtbert.training.trainer import MultitaskTrainer

logger = logging.getLogger("mtbert")


def run(model_args, data_args, training_args) -> dict:
    setup_logging(training_args)
    logger.info(
        "world size %d (this is rank %d), device %s, strategy %s",
        training_args.world_size,
        training_args.process_index,
        training_args.device,
        training_args.strategy,
    )
    if getattr(training_args, "bf16_reason", None):  # bf16: auto was decided when the arguments were read
        logger.info("bf16 %s: %s", "on" if training_args.bf16 else "off", training_args.bf16_reason)
    use_all_cores_when_alone(training_args)
    set_seed(training_args.seed)
    do_train, do_eval, do_predict = training_args.run_phases()

    # Cheap checks first: a finished run in output_dir, a bad checkpoint, backbone or data file fail before any
    # weights are loaded.
    check_output_dir(model_args, training_args)
    resume = None
    if do_train:
        resume = resolve_resume(training_args.resume_from_checkpoint, training_args.output_dir, logger.warning)
    tokenizer, tasks = load_tokenizer_and_tasks(model_args)
    train_caps = data_args.train_caps(tasks)

    # Data: every task's splits, tokenized once in the layout its head reads.
    data = load_tokenized(tasks, data_args, tokenizer)

    # Model: a fresh multitask model on the backbone, or an mtbert checkpoint to continue from.
    model = build_model(model_args)
    card_examples = examples_from_data(data)
    model.config.max_seq_length = data_args.max_seq_length  # saved with every checkpoint: inference truncates alike
    logger.info(count_parameters(model))

    trainer = MultitaskTrainer(
        model=model,
        args=training_args,
        train_dataset={t: d["train"] for t, d in data.items() if "train" in d} if do_train else None,
        eval_dataset={t: d["dev"] for t, d in data.items() if "dev" in d},
        processing_class=tokenizer,
        max_train_samples=train_caps,
        # README.md in every checkpoint: each task's dataset, and its first dev row as widget/usage example
        callbacks=[ModelCardCallback(data_args, examples=card_examples)],
    )

    # The final results go to a staging folder beside output_dir (same filesystem), moved in together at the end.
    staging = staging_dir(training_args.output_dir)
    main_process = trainer.is_world_process_zero()
    try:
        if main_process:
            fresh_staging_dir(training_args.output_dir)
        metrics = {}
        if do_train:
            if main_process and training_args.overwrite_output_dir and not resume:
                remove_earlier_checkpoints(training_args)
            trainer.accelerator.wait_for_everyone()
            if resume:
                logger.info("resuming from %s", resume)
            result = trainer.train(resume_from_checkpoint=resume)
            metrics.update(result.metrics)
            if trainer.averaged_checkpoints is not None:  # the model is already the average
                metrics["averaged_checkpoints"] = trainer.averaged_checkpoints
            if torch.cuda.is_available():
                metrics["train_peak_gpu_memory_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
            save_model(trainer, staging)
            if main_process:  # trainer_state.json with the whole log history (per-task losses included)
                trainer.state.save_to_json(os.path.join(staging, "trainer_state.json"))
            trainer.accelerator.wait_for_everyone()

        if do_eval:
            metrics.update(trainer.evaluate())

        if main_process:
            if metrics:  # --do_predict alone leaves an earlier metrics.json as it is
                write_metrics(staging, metrics)
            if do_train:  # the model card beside the saved model, with the final dev metrics (the card a push uploads)
                write_model_card(trainer, metrics, data_args, card_examples, folder=staging)
            if do_predict and data_args.write_predictions:
                folder = os.path.join(training_args.output_dir, "predictions")
                written = write_leaderboard_files(trainer, data, os.path.join(staging, "predictions"))
                logger.info("wrote %d prediction files to %s", len(written), folder)
            # a training run replaces the earlier run's results as a whole; scoring replaces what it wrote
            replace = earlier_results(training_args.output_dir) if do_train else []
            published = publish(staging, training_args.output_dir, replace=replace)
            if do_train:
                logger.info("wrote the model, tokenizer and model card to %s", training_args.output_dir)
            logger.info("results in place: %s", ", ".join(os.path.basename(p) for p in published))
    except BaseException:
        if main_process:  # nothing of this run's results reaches output_dir
            discard(staging)
        raise
    trainer.accelerator.wait_for_everyone()
    summary = {k: round(v, 4) for k, v in metrics.items() if k.startswith("eval_") and not k.endswith("runtime")}
    logger.info("dev metrics: %s", json.dumps(summary))

    if training_args.push_to_hub and trainer.is_world_process_zero():
        commit = push_final_model(trainer, metrics, data_args, card_examples)
        logger.info("pushed model, tokenizer, code and model card: %s", commit.commit_url)
    return metrics


def main(argv=None):
    model_args, data_args, training_args = main_guard(parse_args, argv)
    return main_guard(run, model_args, data_args, training_args)


if __name__ == "__main__":
    main()
