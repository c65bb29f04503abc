"""Precision, recall, F1 and support of every class id in range(num_classes), in that order."""

import datasets
import evaluate
from sklearn.metrics import precision_recall_fscore_support


class PerClass(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=__doc__, citation="", inputs_description="predictions, references: class ids; num_classes",
            features=datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}))

    def _compute(self, predictions, references, num_classes):
        precision, recall, f1, support = precision_recall_fscore_support(
            references, predictions, labels=list(range(num_classes)), zero_division=0)
        return {"precision": precision.tolist(), "recall": recall.tolist(), "f1": f1.tolist(),
                "support": [int(s) for s in support]}
