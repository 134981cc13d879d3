"""Binary F1 (positive label 1) as an offline ``evaluate`` metric.

Packaged with mtbert so that evaluation never needs the Hugging Face Hub
(``evaluate.load("f1")`` downloads a script). Used for pair classification
(e.g. QQP duplicate detection), where F1 of the positive class is the
conventional companion to accuracy.
"""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """\
The F1 score is the harmonic mean of precision and recall:
F1 = 2 * (precision * recall) / (precision + recall) = 2TP / (2TP + FP + FN).
This module computes binary F1 with class 1 as the positive label; when there
are no true positives (including no positive predictions or references at
all) the score is 0.0, matching scikit-learn's ``zero_division=0``.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int`): Predicted labels (0 or 1).
    references (`list` of `int`): Ground-truth labels (0 or 1).
Returns:
    f1 (`float`): Binary F1 of the positive class 1, in [0, 1].
Examples:
    >>> metric = evaluate.load("mtbert/metrics/f1")
    >>> metric.compute(predictions=[0, 1, 1, 0], references=[0, 1, 0, 1])
    {'f1': 0.5}
"""

_CITATION = """\
@article{scikit-learn,
  title={Scikit-learn: Machine Learning in {P}ython},
  author={Pedregosa, F. and Varoquaux, G. and Gramfort, A. and Michel, V.
          and Thirion, B. and Grisel, O. and Blondel, M. and Prettenhofer, P.
          and Weiss, R. and Dubourg, V. and Vanderplas, J. and Passos, A. and
          Cournapeau, D. and Brucher, M. and Perrot, M. and Duchesnay, E.},
  journal={Journal of Machine Learning Research},
  volume={12},
  pages={2825--2830},
  year={2011}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class F1(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Value("int64"),
                    "references": datasets.Value("int64"),
                }
            ),
            reference_urls=["https://scikit-learn.org/stable/modules/generated/sklearn.metrics.f1_score.html"],
        )

    def _compute(self, predictions, references, average="binary"):
        if average == "macro":  # the unweighted mean of each class's one-vs-rest F1 (multi-class tasks such as NLI)
            predictions = np.asarray(predictions, dtype=np.int64)
            references = np.asarray(references, dtype=np.int64)
            classes = np.union1d(predictions, references)
            scores = [self._compute(predictions == c, references == c)["f1"] for c in classes]
            return {"f1": float(np.mean(scores))}
        if average != "binary":
            raise ValueError(f"average must be 'binary' or 'macro', got {average!r}")
        predictions = np.asarray(predictions, dtype=np.int64) == 1
        references = np.asarray(references, dtype=np.int64) == 1
        tp = int(np.sum(predictions & references))
        fp = int(np.sum(predictions & ~references))
        fn = int(np.sum(~predictions & references))
        denominator = 2 * tp + fp + fn
        # No positives anywhere: F1 is undefined; report 0.0 (sklearn zero_division=0).
        return {"f1": float(2 * tp / denominator) if denominator else 0.0}
