"""Estimator helpers: recognising an XGBoost model step, wrapped or not."""

from __future__ import annotations

from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from xgboost import XGBClassifier, XGBRegressor

from fasttrack.training.estimators import LabelEncodedClassifier, uses_xgboost


def test_xgboost_estimators_are_recognised_wrapped_or_not() -> None:
    assert uses_xgboost(XGBRegressor())
    assert uses_xgboost(LabelEncodedClassifier(XGBClassifier()))


def test_other_estimators_are_not_xgboost() -> None:
    assert not uses_xgboost(HistGradientBoostingClassifier())
    assert not uses_xgboost(LogisticRegression())
    assert not uses_xgboost(LabelEncodedClassifier(LogisticRegression()))
