"""Training: :class:`~mtbert.training.trainer.MultitaskTrainer`, its steps, and what they use (aggregators,
weightings, optimizer groups, precision, callbacks, checkpoints, distillation)."""
