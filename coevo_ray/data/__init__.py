"""Reading and validating corpora: JSON Lines, CSV, Parquet, plain text, or Python sequences."""

from coevo_ray.data.corpus import Corpus, as_corpus, load_corpus, load_demo, validate_texts
from coevo_ray.data.paper_tasks import PAPER_OVERRIDES, PAPER_TASKS, paper_preset

__all__ = ["Corpus", "as_corpus", "load_corpus", "load_demo", "validate_texts", "PAPER_OVERRIDES", "PAPER_TASKS", "paper_preset"]
