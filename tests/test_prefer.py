"""The density-guided selection rule on synthetic embeddings whose answer is known."""

import numpy as np
import pytest

from coevo_ray.errors import InputError
from coevo_ray.prefer import PreferenceConfig, averaged_nearest_centroid_distances, choose_winners, pair_mask, sample_pairs
from coevo_ray.prefer.stage import preference_stage, preference_stage_on_ray


def _world(n_per=20, k=4, d=16, c=4, seed=0):
    """k tight clusters on orthogonal axes. Candidate `best[i]` of text i sits on its cluster's
    centre; the others are pushed off it by increasing amounts (known order)."""
    rng = np.random.default_rng(seed)
    centers = np.eye(k, d) * 1.0
    labels = np.repeat(np.arange(k), n_per)
    greedy = centers[labels] + 0.01 * rng.normal(size=(len(labels), d))
    best = rng.integers(0, c, size=len(labels))
    cands = np.empty((len(labels), c, d))
    for i, lab in enumerate(labels):
        for m in range(c):
            offset = 0.0 if m == best[i] else 0.3 * (1 + (m - best[i]) % c)
            direction = np.zeros(d)
            direction[k + (m % (d - k))] = 1.0
            cands[i, m] = centers[lab] + offset * direction
    cands[:, :, :] += 0.001 * rng.normal(size=cands.shape)
    return greedy.astype(np.float32), cands.astype(np.float32), best, k


def test_density_rule_picks_the_candidate_on_the_centroid():
    greedy, cands, best, k = _world()
    dist = averaged_nearest_centroid_distances(greedy, cands, k, n_runs=5)
    assert dist.shape == cands.shape[:2]
    np.testing.assert_array_equal(choose_winners(dist), best)


def test_distance_is_averaged_over_runs_and_deterministic():
    greedy, cands, _, k = _world(seed=1)
    a = averaged_nearest_centroid_distances(greedy, cands, k + 2, n_runs=3)
    b = averaged_nearest_centroid_distances(greedy, cands, k + 2, n_runs=3)
    np.testing.assert_array_equal(a, b)
    single = [averaged_nearest_centroid_distances(greedy, cands, k + 2, n_runs=1, seed_offset=s) for s in range(3)]
    np.testing.assert_allclose(a, np.mean(single, axis=0), rtol=1e-6)


def test_ties_go_to_the_greedy_candidate():
    dist = np.array([[0.5, 0.5, 0.7], [0.9, 0.2, 0.2]])
    np.testing.assert_array_equal(choose_winners(dist), [0, 1])


def test_single_sampled_candidate_m_equals_one():
    greedy, cands, best, k = _world(c=2)
    dist = averaged_nearest_centroid_distances(greedy, cands, k, n_runs=2)
    winners = choose_winners(dist)
    np.testing.assert_array_equal(winners, best)
    pairs = sample_pairs(pair_mask(winners, dist), winners, max_pairs=10_000)
    assert len(pairs) == len(winners)  # exactly one pair per text
    assert (pairs[:, 1] != pairs[:, 2]).all() and (pairs[:, 1] == winners[pairs[:, 0]]).all()


def test_all_pairs_when_under_the_cap():
    dist = np.array([[0.1, 0.5, 0.6], [0.4, 0.5, 0.2], [0.7, 0.3, 0.9]])
    winners = choose_winners(dist)
    pairs = sample_pairs(pair_mask(winners, dist), winners, max_pairs=100)
    expected = {(0, 0, 1), (0, 0, 2), (1, 2, 0), (1, 2, 1), (2, 1, 0), (2, 1, 2)}
    assert {tuple(p) for p in pairs} == expected


def test_equal_distances_are_not_preferences():
    """Eq. 9 needs d_w < d_l: a candidate as close as the winner (e.g. the same string) is no loser."""
    dist = np.array([[0.2, 0.2, 0.5], [0.3, 0.1, 0.1]])
    winners = choose_winners(dist)
    pairs = {tuple(p) for p in sample_pairs(pair_mask(winners, dist), winners, max_pairs=100)}
    assert pairs == {(0, 0, 2), (1, 1, 0)}
    # The random rule (the paper's ablation) has no distance order to respect.
    assert pair_mask(winners, dist, "random").sum() == 4


def test_incomplete_answers_are_never_chosen_nor_rejected():
    """An answer that fell back to mined keywords or was cut by max_tokens may be the closest one;
    it is neither chosen nor trained as a rejected answer, and a text with no complete answer
    gives no pair."""
    dist = np.array([[0.5, 0.1, 0.9, 0.7], [0.2, 0.3, 0.4, 0.6], [0.1, 0.2, 0.3, 0.4]])
    complete = np.array([[True, False, True, True], [True, True, False, True], [False] * 4])
    winners = choose_winners(dist, eligible=complete)
    np.testing.assert_array_equal(winners, [0, 0, -1])
    np.testing.assert_array_equal(choose_winners(dist, "random", seed=1, eligible=complete)[2], -1)
    pairs = {tuple(p) for p in sample_pairs(pair_mask(winners, dist, rejectable=complete), winners, 100)}
    assert pairs == {(0, 0, 2), (0, 0, 3), (1, 0, 1), (1, 0, 3)}


def test_pair_cap_samples_without_replacement_and_is_seeded():
    dist = np.random.default_rng(0).random((5000, 4))  # 15,000 possible pairs
    winners = np.zeros(5000, dtype=int)
    mask = pair_mask(winners, dist, "random")
    a = sample_pairs(mask, winners, max_pairs=1000, seed=3)
    b = sample_pairs(mask, winners, max_pairs=1000, seed=3)
    c = sample_pairs(mask, winners, max_pairs=1000, seed=4)
    assert len(a) == 1000 and len({tuple(p) for p in a}) == 1000
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert (a[:, 1] == winners[a[:, 0]]).all() and (a[:, 1] != a[:, 2]).all()


def test_random_rule_is_seeded_and_not_density():
    dist = np.tile([0.0, 1.0, 2.0, 3.0], (200, 1))
    r = choose_winners(dist, "random", seed=5)
    np.testing.assert_array_equal(r, choose_winners(dist, "random", seed=5))
    assert len(set(r)) == 4


def test_bad_configuration():
    with pytest.raises(InputError, match="unknown preference rule"):
        PreferenceConfig(rule="best")
    with pytest.raises(InputError, match="at least 2 candidates"):
        sample_pairs(np.ones((3, 1), dtype=bool), np.zeros(3, dtype=int), 10)


def test_preference_stage_as_a_ray_task_or_in_the_driver_writes_the_same_pairs(ray_session, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    _, cands, _, k = _world(n_per=5)
    n, c, d = cands.shape
    # In the pipeline the centroids come from candidate 0 (the greedy interpretation) itself.
    cfg = PreferenceConfig(n_runs=3, max_pairs=1000)
    best = choose_winners(averaged_nearest_centroid_distances(cands[:, 0], cands, k, n_runs=3, init=cfg.init))
    interp = [[f"interp {i}.{m}" for m in range(c)] for i in range(n)]
    interp[0][1] = interp[0][best[0]]  # an identical rejected text → the pair is dropped
    cut, fell = (1, best[1]), (2, (best[2] + 1) % c)  # text 1's closest answer was cut; a loser of text 2 fell back
    order = np.random.default_rng(0).permutation(n * c)  # stage outputs come in any row order
    ids, cand = np.repeat(np.arange(n), c)[order], np.tile(np.arange(c), n)[order]
    gen, emb = tmp_path / "gen", tmp_path / "emb"
    gen.mkdir(), emb.mkdir()
    pq.write_table(pa.table({"id": ids, "candidate": cand, "text": [f"text {i}" for i in ids],
                             "interpretation": [interp[i][m] for i, m in zip(ids, cand)],
                             "raw": [f"raw {i}.{m}" for i, m in zip(ids, cand)],
                             "fallback": ["no_keywords_line" if (i, m) == fell else "" for i, m in zip(ids, cand)],
                             "finish_reason": ["length" if (i, m) == cut else "stop" for i, m in zip(ids, cand)]}),
                   gen / "part-0.parquet")
    pq.write_table(pa.table({"id": ids, "candidate": cand,
                             "embedding": [cands[i, m].tolist() for i, m in zip(ids, cand)]}), emb / "part-0.parquet")
    stats = preference_stage_on_ray(str(gen), str(emb), str(tmp_path), k, cfg)
    distances = pq.read_table(tmp_path / "distances.parquet")
    pairs = pq.read_table(tmp_path / "pairs.parquet").to_pylist()
    assert distances.num_rows == n * c and stats["texts"] == n and stats["candidates"] == c
    dist = np.asarray(distances.sort_by([("id", "ascending"), ("candidate", "ascending")])
                      .column("avg_distance")).reshape(n, c)
    winner = best.copy()
    winner[1] = min((m for m in range(c) if m != cut[1]), key=lambda m: dist[1, m])  # the cut one may not win
    assert len(pairs) == stats["pairs"] == n * (c - 1) - (1 if best[0] != 1 else 0) - 2
    assert stats["chosen_by_candidate"] == np.bincount(winner, minlength=c).tolist()
    assert stats["incomplete_by_candidate"] == np.bincount([cut[1], fell[1]], minlength=c).tolist()
    # DPO trains on the strings that were embedded and selected, never on an incomplete answer.
    assert all(r["chosen"] == interp[r["id"]][winner[r["id"]]] and r["text"] == f"text {r['id']}" for r in pairs)
    assert not {interp[cut[0]][cut[1]], interp[fell[0]][fell[1]]} & {r["rejected"] for r in pairs}
    assert all(r["chosen_distance"] < r["rejected_distance"] for r in pairs)
    # A small stage on one CPU node runs in the driver instead: the same pairs and statistics.
    (tmp_path / "in-driver").mkdir()
    assert preference_stage(str(gen), str(emb), str(tmp_path / "in-driver"), k, cfg) == stats
    assert pq.read_table(tmp_path / "in-driver" / "pairs.parquet").to_pylist() == pairs
