"""The project's own GPU training code on one GPU, for a bare machine: no Ray, vLLM or FAISS, no
network, no model weights (models are random-initialised from the configs of Qwen2.5-0.5B /
1.5B and BERT-base; tokenizers are built here). What it runs is what the Ray Train workers run:

- DPO: ``build_dpo_trainer`` (TRL's DPOTrainer, LoRA r=64 on q/k/v/o, each pair's prompt run
  once, only completion tokens through the LM head) in bf16, the paper's batch of 4 pairs;
- the embedder: ``load_for_training`` + ``train_step`` (L_E = InfoNCE + dropout pair + DEC) with
  bf16 autocast, batch 32;
- the merge of the trained adapter into bf16 weights (``write_merged_model``).

It prints, per part, seconds per step, tokens per second and the share of the GPU's bf16 matrix
peak measured in the same run (an 8192³ bf16 product), and writes them as JSON. GEMM FLOPs are
counted from the tokens that reached the model: 2·P·T per forward, plus 2·P·T backward for a
frozen base under LoRA (activation gradients only) or 4·P·T for full fine-tuning (P = weights
outside the embeddings; the LM head counted on the tokens it scores).

On the lent GPU machine (Python 3.12, torch, transformers, peft, sentence-transformers, pyarrow;
no trl/datasets), with the wheels of benchmarks/README.md ("GPU check") carried in ``.whl``:

    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && \\
      PYTHONPATH=/tmp/site python3 benchmarks/gpu_check.py --out $OUT/gpu_check.json

The test suite runs ``--device cpu --tiny`` with ray, vllm and faiss made unimportable.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project's code, not installed there

QWEN = {
    "qwen2.5-0.5b": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                         num_key_value_heads=2, tie_word_embeddings=True),
    "qwen2.5-1.5b": dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                         num_key_value_heads=2, tie_word_embeddings=False),
}
QWEN_TINY = {"qwen-tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                               num_key_value_heads=2, tie_word_embeddings=True)}
BERT_BASE = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)
BERT_TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
DATASHEET_BF16_TFLOPS = 989.0  # H100/H200 SXM dense bf16, vendor datasheet (a lead, not a reading)


def vocabulary(n_words: int) -> list[str]:
    """``n_words`` seeded lowercase words (letters only: Qwen's pre-tokenizer splits digits)."""
    import numpy as np

    rng = np.random.default_rng(1234)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    return sorted({"".join(rng.choice(letters, size=int(rng.integers(3, 7)))) for _ in range(n_words * 2)})[:n_words]


def qwen_tokenizer(vocab: list[str], size: int):
    """A byte-level BPE tokenizer of the Qwen2 class trained here on ``vocab`` (no files, no hub),
    so ``AutoTokenizer`` on a qwen2 model directory rebuilds it as it was."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import Qwen2Tokenizer

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator([" ".join(vocab[i:] + vocab[:i]) for i in range(0, len(vocab), 50)], vocab_size=size,
                            special_tokens=["<|endoftext|>"], show_progress=False)
    model = json.loads(bpe._tokenizer.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    return Qwen2Tokenizer(vocab=model["vocab"], merges=merges, eos_token="<|endoftext|>", pad_token="<|endoftext|>")


def bert_tokenizer(vocab: list[str]):
    """A WordPiece tokenizer of the BERT class over ``vocab``."""
    from transformers import BertTokenizer

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    return BertTokenizer(vocab={t: i for i, t in enumerate(specials + vocab)})


def words(rng, n: int, vocab: list[str]) -> str:
    return " ".join(vocab[int(i)] for i in rng.integers(0, len(vocab), size=n))


def count_tokens(model) -> list[tuple[int, bool]]:
    """(tokens, with gradients) of every forward of ``model`` from now on, read at its input
    embedding (every forward passes it once, padding included: padded positions cost GEMMs too)."""
    import torch

    seen: list[tuple[int, bool]] = []

    def hook(_module, args):
        seen.append((int(args[0].numel()), torch.is_grad_enabled()))

    model.get_input_embeddings().register_forward_pre_hook(hook)
    return seen


def matmul_peak(device: str, tiny: bool) -> float:
    """TFLOP/s of a square bf16 matrix product (fp32 on the CPU), the ceiling the shares refer to."""
    import torch

    n, reps = (512, 3) if tiny else (8192, 10)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    for _ in range(2):
        a @ b
    sync(device)
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n ** 3 * reps / (time.perf_counter() - start) / 1e12


def sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def body_params(model) -> int:
    """Weights outside the embeddings (and the LM head, counted apart)."""
    return sum(p.numel() for n, p in model.named_parameters() if "embed" not in n and "lm_head" not in n)


def check_dpo(name: str, arch: dict, args, work: Path, peak: float) -> dict:
    import numpy as np
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from coevo_ray.hardware import TrainLayout
    from coevo_ray.train_llm import LLMTrainConfig
    from coevo_ray.train_llm.completion_scoring import completion_tokens_only
    from coevo_ray.train_llm.dpo_trainer import build_dpo_trainer, step_timer
    from coevo_ray.train_llm.merge import write_merged_model

    bf16 = args.device == "cuda"
    lexicon = vocabulary(2000 if not args.tiny else 300)
    vocab = 151936 if not args.tiny else 1024
    tok = qwen_tokenizer(lexicon, 4000 if not args.tiny else 1000)
    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=vocab, max_position_embeddings=4096, rope_theta=1e6, rms_norm_eps=1e-6,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, **arch)
    model_dir = work / name
    start = time.perf_counter()
    Qwen2ForCausalLM(config).to(torch.bfloat16 if bf16 else torch.float32).save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    init_s = time.perf_counter() - start
    # The guided prompt is ~200 tokens with its text; answers ~50 (README, "Measured defaults").
    rng = np.random.default_rng(0)
    steps, batch = (2, 2) if args.tiny else (args.warmup + args.steps, 4)
    n_pairs = steps * batch
    prompt_len, answer_len = (24, 8) if args.tiny else (200, 48)
    # TRL tokenizes prompt + answer as one string: answers start with a space, as after a chat
    # template's assistant header they start a new token.
    pairs = {"prompt": [words(rng, prompt_len, lexicon) for _ in range(n_pairs)],
             "chosen": [" " + words(rng, answer_len, lexicon) for _ in range(n_pairs)],
             "rejected": [" " + words(rng, answer_len - 6, lexicon) for _ in range(n_pairs)]}
    cfg = LLMTrainConfig(per_device_batch_size=batch, max_steps=steps, max_length=512, checkpoint_every=0,
                         lora_r=64 if not args.tiny else 8)
    layout = TrainLayout(num_workers=1, use_gpu=args.device == "cuda", cpus_per_worker=1.0,
                         backend="nccl" if args.device == "cuda" else "gloo", deepspeed=False, bf16=bf16)
    trainer, shared = build_dpo_trainer({"model_dir": str(model_dir), "pairs": pairs, "train": asdict(cfg),
                                         "layout": asdict(layout)}, str(work / f"{name}-out"))
    example = trainer.train_dataset[0]
    if not (example["prompt_ids"] and len(example["chosen_ids"]) > 2):
        raise RuntimeError(f"the tokenizer lost the text: {dict((k, example[k]) for k in ('prompt_ids', 'chosen_ids'))}")
    base = trainer.model.get_base_model()
    seen = count_tokens(base)
    timer = step_timer()
    trainer.add_callback(timer)
    with completion_tokens_only():
        trainer.train()
    sync(args.device)
    timed = timer.durations[args.warmup:] if not args.tiny else timer.durations
    # Forwards of the timed steps: policy (with gradients) and reference (without), per step alike.
    share = len(timed) / max(len(timer.durations), 1)
    grad_tokens = sum(t for t, g in seen if g) * share
    ref_tokens = sum(t for t, g in seen if not g) * share
    p = body_params(base)
    head = config.hidden_size * vocab
    scored = sum(len(tok(c)["input_ids"]) + len(tok(r)["input_ids"]) + 2  # + EOS each
                 for c, r in zip(pairs["chosen"], pairs["rejected"])) * share
    flops = 4 * p * grad_tokens + 2 * p * ref_tokens + 6 * head * scored
    seconds = sum(timed)
    trained = work / f"{name}-adapter"
    trainer.model.save_pretrained(trained)
    start = time.perf_counter()
    write_merged_model(model_dir, trained, work / f"{name}-merged", dtype="bfloat16" if bf16 else "float32")
    merge_s = time.perf_counter() - start
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    return {"part": f"dpo {name}", "params": sum(x.numel() for x in base.parameters()), "bf16": bf16,
            "shared_prompt": bool(shared), "pairs_per_step": batch, "timed_steps": len(timed),
            "s_per_step": round(seconds / max(len(timed), 1), 4),
            "tokens_per_s": round((grad_tokens + ref_tokens) / seconds, 1),
            "pairs_per_s": round(batch * len(timed) / seconds, 2),
            "tflops": round(flops / seconds / 1e12, 2), "share_of_measured_peak": round(flops / seconds / 1e12 / peak, 4),
            "finite_loss": all(np.isfinite(losses)), "init_s": round(init_s, 1), "merge_s": round(merge_s, 1),
            "peak_gpu_mib": round(torch.cuda.max_memory_allocated() / 2 ** 20) if args.device == "cuda" else None}


def check_embedder(args, work: Path, peak: float) -> dict:
    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer, models
    from transformers import BertConfig, BertModel

    from coevo_ray.train_embedder import EmbedderTrainConfig
    from coevo_ray.train_embedder.embedder_trainer import load_for_training, train_step

    bf16 = args.device == "cuda"
    arch = BERT_TINY if args.tiny else BERT_BASE
    lexicon = vocabulary(2000 if not args.tiny else 300)
    tok = bert_tokenizer(lexicon)
    torch.manual_seed(0)
    bert_dir, st_dir = work / "bert", work / "bert-st"
    BertModel(BertConfig(vocab_size=len(tok), **arch)).save_pretrained(bert_dir)
    tok.save_pretrained(bert_dir)
    transformer = models.Transformer(str(bert_dir), max_seq_length=128)
    SentenceTransformer(modules=[transformer, models.Pooling(arch["hidden_size"], "mean")]).save(str(st_dir))
    cfg = EmbedderTrainConfig(learning_rate=1e-5, batch_size=32 if not args.tiny else 4)
    k = 16 if not args.tiny else 2
    rng = np.random.default_rng(0)
    centroids = rng.normal(size=(k, arch["hidden_size"])).astype(np.float32)
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    model, loss_module, frozen = load_for_training(str(st_dir), cfg, centroids, np.full(k, 1.0 / k, np.float32),
                                                   args.device)
    seen = count_tokens(model[0].auto_model)
    optimizer = torch.optim.Adam([p for p in loss_module.parameters() if p.requires_grad], lr=cfg.learning_rate)
    steps = 2 if args.tiny else args.warmup + args.steps
    times, losses = [], []
    for step in range(steps):
        rows = {"text": [words(rng, 24 if not args.tiny else 8, lexicon) for _ in range(cfg.batch_size)],
                "interpretation": [words(rng, 40 if not args.tiny else 8, lexicon) for _ in range(cfg.batch_size)]}
        if step == (0 if args.tiny else args.warmup):
            seen.clear()
        sync(args.device)
        start = time.perf_counter()
        parts = train_step(model, loss_module, optimizer, rows, "", args.device, bf16)
        sync(args.device)
        if step >= (0 if args.tiny else args.warmup):
            times.append(time.perf_counter() - start)
        losses.append(float(parts[0].detach()))
    tokens = sum(t for t, _ in seen)
    if tokens < cfg.batch_size * 8 * len(times):
        raise RuntimeError(f"the tokenizer lost the text: {tokens} tokens in {len(times)} steps")
    flops = 6 * body_params(model[0].auto_model) * tokens  # full fine-tuning: forward + both backward GEMMs
    seconds = sum(times)
    return {"part": "embedder bert-base" if not args.tiny else "embedder bert-tiny", "bf16_autocast": bf16,
            "batch": cfg.batch_size, "timed_steps": len(times), "s_per_step": round(seconds / len(times), 4),
            "tokens_per_s": round(tokens / seconds, 1), "tflops": round(flops / seconds / 1e12, 3),
            "share_of_measured_peak": round(flops / seconds / 1e12 / peak, 4), "frozen": frozen,
            "finite_loss": all(np.isfinite(losses))}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    p.add_argument("--tiny", action="store_true", help="tiny configs and two steps (the test suite's run)")
    p.add_argument("--models", default="qwen2.5-0.5b,qwen2.5-1.5b")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--out", default=None, help="write the results here as JSON")
    args = p.parse_args(argv)
    import platform

    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but torch sees no GPU", file=sys.stderr)
        return 2
    env = {"python": platform.python_version(), "torch": torch.__version__,
           "gpu": torch.cuda.get_device_name(0) if args.device == "cuda" else platform.processor() or "cpu"}
    for mod in ("transformers", "peft", "trl", "sentence_transformers"):
        env[mod] = __import__(mod).__version__
    peak = matmul_peak(args.device, args.tiny)
    results = {"env": env, "measured_peak_tflops": round(peak, 1),
               "datasheet_bf16_tflops": DATASHEET_BF16_TFLOPS if args.device == "cuda" else None, "parts": []}
    print(json.dumps({"env": env, "measured_peak_tflops": round(peak, 1)}), flush=True)
    archs = QWEN_TINY if args.tiny else {m: QWEN[m] for m in args.models.split(",")}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="coevo-gpu-check-") as tmp:
        for name, arch in archs.items():
            results["parts"].append(check_dpo(name, arch, args, Path(tmp), peak))
            print(json.dumps(results["parts"][-1]), flush=True)
        results["parts"].append(check_embedder(args, Path(tmp), peak))
        print(json.dumps(results["parts"][-1]), flush=True)
    results["total_s"] = round(time.perf_counter() - started, 1)
    ok = all(part["finite_loss"] for part in results["parts"])
    print(f"gpu_check: {'ok' if ok else 'non-finite loss'} in {results['total_s']} s")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
