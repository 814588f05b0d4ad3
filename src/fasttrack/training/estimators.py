"""Estimator wrappers that let any classifier keep the original labels end to end.

XGBoost's classifier accepts only the integers ``0..k-1`` as labels, while FastTrack promises that a model
predicts the labels it was trained on (``"positive"``, ``"Adelie"``, ``0``/``1``, ...). The wrapper below
encodes labels on the way in and decodes them on the way out, and keeps the fitted inner estimator reachable
as ``estimator_`` so that ONNX converters (onnxmltools for XGBoost) can convert it directly and map the
integer outputs back through ``classes_``.
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.utils.validation import check_is_fitted


class LabelEncodedClassifier(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """A classifier that fits ``estimator`` on integer-encoded labels and predicts the original labels.

    ``classes_`` holds the original labels, sorted as :func:`numpy.unique` sorts them (like every sklearn
    classifier), and column ``i`` of :meth:`predict_proba` is the probability of ``classes_[i]``. The fitted
    inner estimator is ``estimator_``; it sees the labels as ``0..len(classes_)-1``. The wrapper follows the
    sklearn estimator API (``get_params``/``set_params`` with ``estimator__*`` names, ``clone``) and pickles
    with plain ``pickle`` and ``cloudpickle``.
    """

    def __init__(self, estimator: Any) -> None:
        self.estimator = estimator

    def fit(self, X: Any, y: Any, **fit_params: Any) -> Self:  # noqa: N803 - sklearn's argument name
        """Fit a clone of ``estimator`` on ``X`` and the integer codes of ``y``; return ``self``."""
        labels = np.asarray(y)
        classes, codes = np.unique(labels, return_inverse=True)
        self.classes_ = classes
        self.estimator_ = clone(self.estimator).fit(X, codes, **fit_params)
        if hasattr(self.estimator_, "n_features_in_"):
            self.n_features_in_ = self.estimator_.n_features_in_
        if hasattr(self.estimator_, "feature_names_in_"):
            self.feature_names_in_ = self.estimator_.feature_names_in_
        return self

    def predict(self, X: Any) -> np.ndarray[Any, Any]:  # noqa: N803 - sklearn's argument name
        """The predicted original label of each row (the inner estimator's class index, decoded)."""
        check_is_fitted(self, "estimator_")
        codes = np.asarray(self.estimator_.predict(X)).astype(np.intp).ravel()
        result: np.ndarray[Any, Any] = self.classes_[codes]
        return result

    def predict_proba(self, X: Any) -> np.ndarray[Any, Any]:  # noqa: N803 - sklearn's argument name
        """Class probabilities, one column per entry of ``classes_``, in that order."""
        check_is_fitted(self, "estimator_")
        return np.asarray(self.estimator_.predict_proba(X), dtype=np.float64)

    @property
    def feature_importances_(self) -> np.ndarray[Any, Any]:
        """The inner estimator's feature importances (``AttributeError`` when it has none)."""
        check_is_fitted(self, "estimator_")
        return np.asarray(self.estimator_.feature_importances_)


def uses_xgboost(estimator: Any) -> bool:
    """Whether ``estimator`` (a pipeline's model step) is an XGBoost estimator or wraps one.

    Decided by type, without importing xgboost and without rendering the estimator's ``repr``.
    """
    if isinstance(estimator, LabelEncodedClassifier):
        estimator = estimator.estimator
    return type(estimator).__module__.partition(".")[0] == "xgboost"
