"""Confusion matrix over class ids range(num_classes): rows are the true class, columns the predicted class."""

import datasets
import evaluate
from sklearn.metrics import confusion_matrix


class Confusion(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=__doc__, citation="", inputs_description="predictions, references: class ids; num_classes",
            features=datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}))

    def _compute(self, predictions, references, num_classes):
        return {"confusion": confusion_matrix(references, predictions, labels=list(range(num_classes))).tolist()}
