"""Pearson correlation as an offline ``evaluate`` metric.

Packaged with mtbert so that evaluation never needs the Hugging Face Hub
(``evaluate.load("pearsonr")`` downloads a script). Used for pair regression
(STS-B). Unlike a bare ``scipy.stats.pearsonr`` call, a constant input (e.g. a
freshly initialised regression head predicting one value) yields 0.0 instead
of NaN plus a ``ConstantInputWarning``, so training logs and "best model"
selection stay well defined.
"""

import warnings

import datasets
import evaluate
import numpy as np
from scipy import stats

_DESCRIPTION = """\
Pearson correlation coefficient between predictions and references: the
covariance of the two divided by the product of their standard deviations,
in [-1, 1]. Degenerate inputs (fewer than two points, or a constant
sequence) have no defined correlation and score 0.0.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `float`): Predicted scores.
    references (`list` of `float`): Ground-truth scores.
Returns:
    pearsonr (`float`): Pearson correlation in [-1, 1]; 0.0 for degenerate input.
Examples:
    >>> metric = evaluate.load("mtbert/metrics/pearsonr")
    >>> metric.compute(predictions=[1.0, 2.0, 3.0], references=[2.0, 4.0, 6.0])
    {'pearsonr': 1.0}
"""

_CITATION = """\
@article{2020SciPy-NMeth,
  author  = {Virtanen, Pauli and Gommers, Ralf and Oliphant, Travis E. and
             Haberland, Matt and Reddy, Tyler and Cournapeau, David and
             Burovski, Evgeni and Peterson, Pearu and Weckesser, Warren and
             Bright, Jonathan and {van der Walt}, St{\\'e}fan J. and others},
  title   = {{SciPy} 1.0: Fundamental Algorithms for Scientific Computing in Python},
  journal = {Nature Methods},
  year    = {2020},
  volume  = {17},
  pages   = {261--272},
  doi     = {10.1038/s41592-019-0686-2}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Pearsonr(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Value("float64"),
                    "references": datasets.Value("float64"),
                }
            ),
            reference_urls=["https://docs.scipy.org/doc/scipy/reference/generated/scipy.stats.pearsonr.html"],
        )

    def _compute(self, predictions, references):
        predictions = np.asarray(predictions, dtype=np.float64)
        references = np.asarray(references, dtype=np.float64)
        if predictions.size < 2 or np.ptp(predictions) == 0 or np.ptp(references) == 0:
            # Fewer than two points or a constant sequence: the correlation is
            # undefined (scipy warns and returns NaN); report 0.0 instead.
            return {"pearsonr": 0.0}
        with warnings.catch_warnings():
            # Silence NearConstantInputWarning and friends; the value is still usable.
            # Non-finite inputs (a diverged model) deliberately still give NaN.
            warnings.simplefilter("ignore")
            value = stats.pearsonr(predictions, references)[0]
        return {"pearsonr": float(value)}
