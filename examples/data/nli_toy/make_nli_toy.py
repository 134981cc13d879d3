#!/usr/bin/env python
"""Write the toy NLI folder used by examples/configs/own_task.yaml: train.csv (48 rows) and validation.csv (12 rows).

Made-up template sentences (premise, hypothesis, label in entailment / neutral / contradiction), balanced and
deterministic; run it again to recreate the files exactly. There is no test.csv: the task has no test split.
"""

import csv
import os
import random

PEOPLE = ["man", "woman", "child", "girl", "boy", "chef", "doctor", "farmer", "teacher", "singer"]
ACTIONS = [
    ("playing a guitar", "making music"),
    ("riding a bike", "outdoors on a bike"),
    ("reading a book", "reading"),
    ("cooking dinner", "making food"),
    ("running", "moving fast"),
    ("painting a wall", "holding a brush"),
]
PLACES = ["park", "kitchen", "street", "garden", "library", "station"]
LABELS = ["entailment", "neutral", "contradiction"]


def pair(rng: random.Random, label: str) -> tuple[str, str]:
    person, (action, gist), place = rng.choice(PEOPLE), rng.choice(ACTIONS), rng.choice(PLACES)
    premise = f"A {person} is {action} in the {place}."
    if label == "entailment":
        hypothesis = rng.choice([f"A {person} is {gist}.", f"Someone is in the {place}."])
    elif label == "neutral":
        hypothesis = rng.choice([f"The {person} is {action} for a friend.", f"The {person} is very tired today."])
    else:
        hypothesis = rng.choice([f"The {person} is asleep at home.", f"Nobody is in the {place}."])
    return premise, hypothesis


def main(folder: str = os.path.dirname(os.path.abspath(__file__))) -> None:
    rng = random.Random(14)
    for split, n in (("train", 48), ("validation", 12)):
        labels = [LABELS[i % 3] for i in range(n)]
        rng.shuffle(labels)
        with open(os.path.join(folder, f"{split}.csv"), "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["id", "premise", "hypothesis", "label"])
            for i, label in enumerate(labels):
                writer.writerow([f"{split}-{i}", *pair(rng, label), label])


if __name__ == "__main__":
    main()
