"""Estimator conventions shared by every fastcls model (scikit-learn compatible).

Parameters are stored verbatim in ``__init__`` and validated in ``fit``; fitted
attributes end with an underscore. scikit-learn is not imported at runtime.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np


class BaseEstimator:
    """``get_params`` / ``set_params`` / ``repr`` from the ``__init__`` signature."""

    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return sorted(
            p.name
            for p in sig.parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
        )

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Parameters of this estimator, as passed to ``__init__``."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> BaseEstimator:
        """Set parameters (validated at the next ``fit``); returns ``self``."""
        valid = set(self._param_names())
        for name, value in params.items():
            if name not in valid:
                raise ValueError(
                    f"Invalid parameter {name!r} for {type(self).__name__}; "
                    f"valid parameters are {sorted(valid)}"
                )
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        defaults = {
            p.name: p.default
            for p in inspect.signature(type(self).__init__).parameters.values()
            if p.name != "self"
        }
        changed = []
        for name, value in self.get_params().items():
            default = defaults.get(name, inspect.Parameter.empty)
            same = default is not inspect.Parameter.empty and (
                default is value or (_scalar(default) and _scalar(value) and default == value)
            )
            if not same:
                changed.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(changed)})"


def _scalar(v: Any) -> bool:
    return isinstance(v, (int, float, str, bool, type(None)))


class ClassifierMixin:
    """``score`` as mean accuracy; estimator type tag for scikit-learn."""

    _estimator_type = "classifier"

    def score(self, X: Any, y: Any) -> float:
        """Mean accuracy of ``predict(X)`` against ``y``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or images
        y : array-like of shape (n_samples,)

        Returns
        -------
        float
        """
        y_arr = np.asarray(y)
        pred = self.predict(X)  # type: ignore[attr-defined]
        if y_arr.shape != pred.shape:
            raise ValueError(f"y has shape {y_arr.shape} but X gives {pred.shape[0]} predictions")
        return float(np.mean(pred == y_arr))

    def __sklearn_tags__(self):  # pragma: no cover - only called by scikit-learn
        from sklearn.utils import ClassifierTags, InputTags, Tags, TargetTags

        return Tags(
            estimator_type="classifier",
            target_tags=TargetTags(required=True),
            classifier_tags=ClassifierTags(),
            input_tags=InputTags(three_d_array=True),
        )
