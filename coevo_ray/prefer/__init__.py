"""Step 3 — prefer: the embedding model picks, per text, the candidate in the densest region."""

from coevo_ray.config import PreferenceConfig
from coevo_ray.prefer.density import (
    PREFERENCE_RULES,
    averaged_nearest_centroid_distances,
    choose_winners,
    pair_mask,
    sample_pairs,
)

__all__ = ["PREFERENCE_RULES", "PreferenceConfig", "averaged_nearest_centroid_distances",
           "choose_winners", "pair_mask", "sample_pairs"]
