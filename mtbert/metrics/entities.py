"""Entity-level precision/recall/F1 of tag sequences, as seqeval computes them in strict IOB2 mode
(``seqeval.metrics.f1_score(y_true, y_pred, mode="strict", scheme=IOB2)``), offline and without its dependencies.

A span is a ``B-X`` followed by any run of ``I-X``; an ``I-X`` that does not continue a ``B-X``/``I-X`` of the same
type starts nothing. Scores are micro-averaged over all spans: precision = right spans / predicted spans, recall =
right spans / true spans (0 where the denominator is 0). Plain tags without a ``B-``/``I-`` prefix (POS tags) count
each word whose tag is not ``O`` as a one-word span of that tag, so ``f1`` is then the micro F1 of the non-``O`` tags.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["entity_scores", "spans"]


def _split(tag: str) -> tuple[str, str]:
    if len(tag) > 2 and tag[1] == "-" and tag[0] in "BI":
        return tag[0], tag[2:]
    return ("O", "") if tag == "O" else ("", tag)


def spans(tags: Sequence[str]) -> set[tuple[int, int, str]]:
    """``(start, end, type)`` of every strict IOB2 span (``end`` exclusive)."""
    out, i = set(), 0
    while i < len(tags):
        prefix, kind = _split(tags[i])
        if prefix == "B":
            end = i + 1
            while end < len(tags) and _split(tags[end]) == ("I", kind):
                end += 1
            out.add((i, end, kind))
            i = end
            continue
        if prefix == "" and kind:  # a plain tag: a one-word span
            out.add((i, i + 1, kind))
        i += 1
    return out


def entity_scores(true: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> dict[str, float]:
    """``{"precision", "recall", "f1", "accuracy"}`` over sentences of tag names (``accuracy``: of words)."""
    if len(true) != len(predicted):
        raise ValueError(f"{len(true)} true tag sequences but {len(predicted)} predicted ones")
    right = n_true = n_predicted = words = right_words = 0
    for row, (gold, guess) in enumerate(zip(true, predicted)):
        if len(gold) != len(guess):
            raise ValueError(f"sentence {row}: {len(gold)} true tags but {len(guess)} predicted ones")
        gold_spans, guess_spans = spans(gold), spans(guess)
        right += len(gold_spans & guess_spans)
        n_true += len(gold_spans)
        n_predicted += len(guess_spans)
        words += len(gold)
        right_words += sum(a == b for a, b in zip(gold, guess))
    precision = right / n_predicted if n_predicted else 0.0
    recall = right / n_true if n_true else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "accuracy": right_words / words if words else 0.0}
