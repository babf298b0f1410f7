"""scikit-learn's parameter protocol for the two estimators: ``__init__`` stores parameters only,
``get_params``/``set_params`` read and write them by name (``_PARAMS``, set by each class)."""

from __future__ import annotations

from typing import Any, ClassVar

from coevo_ray.errors import InputError


class Params:
    _PARAMS: ClassVar[tuple[str, ...]] = ()

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._PARAMS}

    def set_params(self, **params: Any):
        unknown = sorted(set(params) - set(self._PARAMS))
        if unknown:
            raise InputError(f"unknown parameters {unknown}; {type(self).__name__} takes {', '.join(self._PARAMS)}")
        for name, value in params.items():
            setattr(self, name, value)
        return self
