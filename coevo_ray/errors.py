"""Exceptions raised for bad input, so callers can catch one family and read a precise message."""


class CoEvoError(Exception):
    """Base class of every error coevo_ray raises on purpose."""


class InputError(CoEvoError, ValueError):
    """The corpus, labels or a parameter is unusable; the message names the row, line or value."""


class ModelNotFoundError(CoEvoError, FileNotFoundError):
    """A model reference could not be resolved to local weights; the message says how to fix it."""


class RunDirectoryError(CoEvoError, RuntimeError):
    """The run directory is unwritable or was written by a different configuration."""


class NotFittedError(CoEvoError, ValueError, AttributeError):
    """A fitted-model method was called before ``fit`` or ``load`` (as scikit-learn's)."""


class TrainingError(CoEvoError, RuntimeError):
    """A training run (DPO or the embedder, on Ray Train) ended without a usable result."""
