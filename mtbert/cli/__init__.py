"""What the scripts of ``examples/`` run: arguments (config files, ``extends``, the parser), the training run
steps, hyperparameter search."""
