"""Write a small ATIS/SNIPS-like joint intent + slot data set: utterances with an intent label and BIO slot tags.

    python examples/data/make_intent_slots.py outputs/data/intent_slots [--train 2000 --dev 400 --test 400]

Each split is written twice, so both of mtbert's token-data routes are exercised:
- ``<split>.jsonl``: one row per utterance with ``id``, ``text``, ``tokens``, ``intent`` and ``slots`` (one tag per
  word), read by an intent task (``text_columns: [text]``, ``label_column: intent``) and a slot task
  (``tokens_column: tokens``, ``tags_column: slots``) from the same files;
- ``conll/<split>.txt``: the slot tags in CoNLL form (one ``word tag`` per line, a blank line between utterances).

The dev and test splits use slot values (cities, artists, dishes, ...) that the training split never shows, so a
slot tagger must learn from context, not memorise names. Deterministic for a given ``--seed``.
"""

from __future__ import annotations

import argparse
import json
import os
import random

# Slot values: the first list of each pair is for training, the second only for dev/test (held out). Both hold
# one-word and multi-word values, so every B-/I- tag is seen in training.
VALUES = {
    "city": (
        [
            "boston",
            "denver",
            "atlanta",
            "seattle",
            "chicago",
            "dallas",
            "miami",
            "phoenix",
            "detroit",
            "houston",
            "portland",
            "orlando",
            "los angeles",
            "las vegas",
            "salt lake city",
            "kansas city",
        ],
        ["austin", "memphis", "toronto", "oakland", "tampa", "raleigh", "new york", "san diego"],
    ),
    "date": (
        ["monday", "tuesday", "friday", "tomorrow", "next week", "june third", "saturday morning"],
        ["sunday", "wednesday", "next month", "march fifth", "thursday evening"],
    ),
    "time": (
        ["seven am", "noon", "six thirty", "nine pm", "midnight", "eight fifteen", "half past two", "ten to nine"],
        ["five am", "ten thirty", "quarter past four", "eleven pm"],
    ),
    "artist": (
        ["adele", "the beatles", "miles davis", "taylor swift", "queen", "bob dylan", "nina simone"],
        ["radiohead", "billie holiday", "daft punk", "johnny cash", "ella fitzgerald"],
    ),
    "song": (
        ["yesterday", "blue in green", "hey jude", "imagine", "hallelujah", "jolene", "let it be"],
        ["creep", "hurt", "summertime", "one more time"],
    ),
    "cuisine": (
        ["italian", "thai", "mexican", "indian", "sushi", "french", "korean"],
        ["greek", "ethiopian", "vietnamese", "lebanese", "spanish"],
    ),
}

# intent -> templates; {slot} marks a slot (its tag is the slot's name; "from_city"/"to_city" read city values)
TEMPLATES = {
    "book_flight": [
        "book a flight from {from_city} to {to_city} on {date}",
        "i need to fly from {from_city} to {to_city}",
        "find me a ticket to {to_city} leaving {date}",
        "show flights from {from_city} to {to_city} {date}",
        "is there a flight to {to_city} from {from_city} at {time}",
    ],
    "get_weather": [
        "what is the weather in {city} {date}",
        "will it rain in {city} on {date}",
        "how cold is it in {city}",
        "weather forecast for {city}",
    ],
    "play_music": [
        "play {song} by {artist}",
        "put on some {artist}",
        "i want to hear {song}",
        "play music by {artist} please",
    ],
    "set_alarm": [
        "wake me up at {time}",
        "set an alarm for {time} on {date}",
        "set my alarm to {time}",
        "remind me at {time} {date}",
    ],
    "find_restaurant": [
        "find a {cuisine} restaurant in {city}",
        "where can i eat {cuisine} food near {city}",
        "book a table for {cuisine} {date} at {time}",
        "any good {cuisine} places in {city}",
    ],
}
SLOT_VALUES = {"from_city": "city", "to_city": "city"}


def utterance(rng: random.Random, held_out: bool) -> dict:
    intent = rng.choice(sorted(TEMPLATES))
    template = rng.choice(TEMPLATES[intent])
    tokens, tags = [], []
    for piece in template.split():
        if piece.startswith("{") and piece.endswith("}"):
            slot = piece[1:-1]
            train_values, new_values = VALUES[SLOT_VALUES.get(slot, slot)]
            words = rng.choice(new_values if held_out else train_values).split()
            tokens.extend(words)
            tags.extend([f"B-{slot}"] + [f"I-{slot}"] * (len(words) - 1))
        else:
            tokens.append(piece)
            tags.append("O")
    return {"text": " ".join(tokens), "tokens": tokens, "intent": intent, "slots": tags}


def write_split(folder: str, split: str, rows: list[dict]) -> None:
    with open(os.path.join(folder, f"{split}.jsonl"), "w", encoding="utf-8") as handle:
        for i, row in enumerate(rows):
            handle.write(json.dumps({"id": f"{split}-{i}", **row}) + "\n")
    os.makedirs(os.path.join(folder, "conll"), exist_ok=True)
    with open(os.path.join(folder, "conll", f"{split}.txt"), "w", encoding="utf-8") as handle:
        for row in rows:
            handle.writelines(f"{word} {tag}\n" for word, tag in zip(row["tokens"], row["slots"]))
            handle.write("\n")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output_dir")
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--dev", type=int, default=400)
    parser.add_argument("--test", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for name in ("train", "dev", "test"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    rng = random.Random(args.seed)
    os.makedirs(args.output_dir, exist_ok=True)
    for split, count in (("train", args.train), ("dev", args.dev), ("test", args.test)):
        write_split(args.output_dir, split, [utterance(rng, held_out=split != "train") for _ in range(count)])
    print(f"{args.output_dir}: {args.train} train, {args.dev} dev, {args.test} test utterances")


if __name__ == "__main__":
    main()
