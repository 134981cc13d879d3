#!/usr/bin/env python
"""Train one multitask BERT on SST, QQP and STS (or your own tasks).

    accelerate launch examples/train.py examples/configs/quickstart.yaml
    python examples/train.py examples/configs/quickstart.yaml --learning_rate 3e-5 --tasks.sts.pooling cls
    torchrun --nproc_per_node 2 examples/train.py examples/configs/quickstart.yaml

The config file sets defaults, flags override them (every TrainingArguments flag works). At the end the script
scores every dev set, writes <output_dir>/metrics.json, the model and tokenizer, and the leaderboard files in
<output_dir>/predictions/.
"""

from mtbert.arguments import parse_args
from mtbert.run import main_guard, train


def main(argv=None):
    model_args, data_args, training_args = main_guard(parse_args, argv)
    return main_guard(train, model_args, data_args, training_args)


if __name__ == "__main__":
    main()
