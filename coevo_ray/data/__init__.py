"""Reading and validating corpora: JSON Lines, CSV, Parquet, plain text, or Python sequences."""

from coevo_ray.data.corpus import Corpus, load_corpus, validate_texts

__all__ = ["Corpus", "load_corpus", "validate_texts"]
