"""Macro-F1: the unweighted mean of the per-class F1 scores, over the classes that occur in the references or the
predictions. A class absent from both has no F1 to average (scikit-learn's default); counting it as 0 would
lower the score for a class the test split cannot judge."""

import datasets
import evaluate
from sklearn.metrics import f1_score


class MacroF1(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=__doc__, citation="", inputs_description="predictions, references: class ids",
            features=datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}))

    def _compute(self, predictions, references):
        return {"macro_f1": float(f1_score(references, predictions, average="macro", zero_division=0))}
