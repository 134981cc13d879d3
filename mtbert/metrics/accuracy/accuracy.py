"""Accuracy as an offline ``evaluate`` metric.

Packaged with mtbert so that evaluation never needs the Hugging Face Hub
(``evaluate.load("accuracy")`` downloads a script); load it with
``evaluate.load("<path to this folder>")`` or ``mtbert.metrics.load_metric("accuracy")``.
"""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """\
Accuracy is the proportion of correct predictions among all predictions:
accuracy = (TP + TN) / (TP + TN + FP + FN).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int`): Predicted class ids.
    references (`list` of `int`): Ground-truth class ids.
Returns:
    accuracy (`float`): Fraction of predictions equal to the reference, in [0, 1].
Examples:
    >>> metric = evaluate.load("mtbert/metrics/accuracy")
    >>> metric.compute(predictions=[0, 1, 1, 0], references=[0, 1, 0, 0])
    {'accuracy': 0.75}
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
class Accuracy(evaluate.Metric):
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
            reference_urls=["https://scikit-learn.org/stable/modules/generated/sklearn.metrics.accuracy_score.html"],
        )

    def _compute(self, predictions, references):
        predictions = np.asarray(predictions, dtype=np.int64)
        references = np.asarray(references, dtype=np.int64)
        if predictions.size == 0:
            # No examples: report 0 rather than NaN from a 0/0 mean.
            return {"accuracy": 0.0}
        return {"accuracy": float(np.mean(predictions == references))}
