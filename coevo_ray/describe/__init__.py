"""After clustering — describe: top keywords per cluster (class-TF-IDF) and an LLM-written name."""

from coevo_ray.describe.keywords import cluster_keywords, text_keywords
from coevo_ray.describe.names import clean_name, keyword_name, name_problem, naming_requests

__all__ = ["cluster_keywords", "text_keywords", "clean_name", "keyword_name", "name_problem", "naming_requests"]
