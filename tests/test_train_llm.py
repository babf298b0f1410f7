"""DPO with TRL on 2 Ray Train CPU workers, SmolLM2-135M + LoRA; the adapter feeds vLLM actors."""

import json


from coevo_ray.interpret import EngineSpec, GenerationSettings, TaskDescription, interpret_dataset, render_prompt
from coevo_ray.resources import StageResources
from coevo_ray.data import load_corpus
from coevo_ray.train_llm import LLMTrainConfig, merge_adapter, train_dpo
from coevo_ray.testing import checkpoint_dirs, kill_a_train_worker_after_checkpoints, read_jsonl

TASK = "intent: user intent"


def _pairs(model_dir, n=8):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    texts, labels = read_jsonl("bank77.jsonl", n=n, seed=5)
    desc = TaskDescription.parse(TASK)
    return {
        "prompt": [render_prompt(tok, t, desc, "guided") for t in texts],
        "chosen": [f"Reasoning: The customer asks about {y}.\nKeywords: {y}, banking, request" for y in labels],
        "rejected": ["Reasoning: I'm ready to assist with any text analysis task.\nKeywords: text, analysis, task"] * n,
    }, texts


def test_dpo_on_two_workers_survives_a_killed_worker_learns_and_changes_vllm_output(ray_session, smollm2_dir,
                                                                                   tmp_path, no_leftovers):
    """One DPO run: a worker is SIGKILLed after the periodic checkpoints start; Ray Train
    restarts the group, the Trainer resumes from the checkpoint, and the result must still
    learn, agree across ranks and change vLLM's output."""
    pairs, texts = _pairs(smollm2_dir)
    # A larger lr than the paper's 1e-5 so that 4 steps move greedy outputs visibly.
    cfg = LLMTrainConfig(max_steps=4, per_device_batch_size=2, learning_rate=1e-3, num_workers=2, max_length=384,
                         checkpoint_every=1)
    storage = tmp_path / "ray"
    killer, killed = kill_a_train_worker_after_checkpoints(storage)
    adapter, metrics = train_dpo(str(smollm2_dir), pairs, tmp_path / "adapter", cfg,
                                 storage_path=str(storage), evaluate=True)
    killer.join(timeout=5)
    print("\nDPO metrics:", json.dumps(metrics, indent=1))
    assert "pid" in killed, "no Ray Train worker was killed"
    assert metrics["steps"] == 4 and 1 <= metrics["resumed_from_step"] < 4, metrics
    # The reported checkpoints hold the trainer state but not the pickled training_args.bin.
    assert "trainer_state.json" in killed["files"] and "training_args.bin" not in killed["files"]
    assert not checkpoint_dirs(storage)  # removed from the storage once exported
    assert (adapter / "adapter_config.json").exists() and (adapter / "adapter_model.safetensors").exists()
    assert json.loads((adapter / "adapter_config.json").read_text())["r"] == 64
    digests = metrics["rank_digests"]
    assert len(digests) == 2 and digests[0] == digests[1], "DDP ranks ended with different adapters"
    assert digests[0] != metrics["initial_digest"], "training did not change the adapter"
    for key in ("loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"):
        assert key in metrics
    # Learning: the mean reward margin on the fixed preference set grows (zero before: LoRA B = 0).
    assert metrics["after/rewards/margins"] > metrics["before/rewards/margins"]

    ds = load_corpus(texts[:4]).to_ray_dataset()
    settings = GenerationSettings(task=TASK, temperatures=(0.0,), max_tokens=20)
    base = interpret_dataset(ds, EngineSpec(model_dir=str(smollm2_dir)), settings, StageResources()).take_all()
    tuned = interpret_dataset(ds, EngineSpec(model_dir=str(smollm2_dir), adapter_dir=str(adapter)), settings,
                              StageResources()).take_all()
    key = lambda r: r["id"]
    tuned_raw = [r["raw"] for r in sorted(tuned, key=key)]
    assert [r["raw"] for r in sorted(base, key=key)] != tuned_raw

    # Merged weights (the CPU serving path) give the same greedy outputs as the runtime LoRA,
    # up to fp32 rounding of W + BA vs W·x + B(A·x).
    merged = merge_adapter(smollm2_dir, adapter, tmp_path / "merged")
    assert (merged / "model.safetensors").exists()
    served = interpret_dataset(ds, EngineSpec(model_dir=str(merged)), settings, StageResources()).take_all()
    merged_raw = [r["raw"] for r in sorted(served, key=key)]
    same = sum(a == b for a, b in zip(merged_raw, tuned_raw))
    print(f"merged vs runtime LoRA: {same}/{len(tuned_raw)} identical greedy outputs")
    assert same >= len(tuned_raw) - 1


def test_fused_lm_head_scores_only_completion_tokens_on_cpu_with_the_same_log_probs(smollm2_dir, monkeypatch):
    """TRL's fused LM head projects every position off Triton; inside ``completion_tokens_only``
    it projects only the labelled (completion) ones, and the log-probabilities are unchanged."""
    import torch
    import trl.trainer.utils as trl_utils
    from transformers import AutoModelForCausalLM
    from trl.trainer.utils import add_fused_lm_head

    from coevo_ray.train_llm.completion_scoring import completion_tokens_only

    model = AutoModelForCausalLM.from_pretrained(str(smollm2_dir), dtype=torch.float32).eval()
    add_fused_lm_head(model)
    ids = torch.randint(0, 1000, (2, 40), generator=torch.Generator().manual_seed(0))
    labels = ids.masked_fill(torch.arange(40) < 30, -100)  # 30 prompt positions, 10 completion ones
    rows = []
    apply = trl_utils._ChunkedLogProbFunction.apply

    def spy(hidden, *args):
        rows.append(hidden.shape[0])
        return apply(hidden, *args)

    monkeypatch.setattr(trl_utils._ChunkedLogProbFunction, "apply", spy)  # counts rows, computes as before
    with torch.no_grad():
        full = model(input_ids=ids, labels=labels, fused_lm_head=True).log_probs
        with completion_tokens_only() as compact:
            only = model(input_ids=ids, labels=labels, fused_lm_head=True).log_probs
        after = model(input_ids=ids, labels=labels, fused_lm_head=True).log_probs
    assert compact
    # Shifted by one: 39 scored positions per row without the block, the 10 labelled ones with it.
    assert rows == [2 * 39, 2 * 10, 2 * 39]
    assert torch.allclose(full, only, atol=1e-5) and torch.equal(full, after)
    assert (only[:, :29] == 0).all() and (only[:, 29:] < 0).all()


def test_shared_prompt_packing_gives_trls_log_probs_and_gradients_with_each_prompt_run_once(smollm2_dir):
    """TRL's DPO batch [prompt + chosen; prompt + rejected] (its own collator, right padding,
    answers of different lengths) scored packed, one prompt per pair, through PEFT's LoRA as in
    training: every per-token field and the LoRA gradients equal TRL's layout, the backbone sees
    fewer tokens, and a batch whose prompts differ keeps TRL's layout."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl.trainer.dpo_trainer import DataCollatorForPreference
    from trl.trainer.utils import add_fused_lm_head

    from coevo_ray.train_llm.completion_scoring import completion_tokens_only
    from coevo_ray.train_llm.shared_prompt import share_prompts

    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    pairs, _ = _pairs(smollm2_dir, n=3)
    encode = lambda s: tok(s, add_special_tokens=False)["input_ids"]
    examples = [{"prompt_ids": encode(p), "chosen_ids": encode(c) + [tok.eos_token_id],
                 "rejected_ids": encode(r)[:5 + 4 * i]}  # rejected answers shorter and longer than chosen
                for i, (p, c, r) in enumerate(zip(pairs["prompt"], pairs["chosen"], pairs["rejected"]))]
    batch = DataCollatorForPreference(pad_token_id=tok.pad_token_id).torch_call(examples)
    labels = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)

    def score(shared: bool, input_ids=batch["input_ids"]):
        torch.manual_seed(0)
        base = AutoModelForCausalLM.from_pretrained(str(smollm2_dir), dtype=torch.float32)
        add_fused_lm_head(base, outputs=("log_probs", "entropy", "mean_logits", "is_top1"))
        tokens = []
        base.model.register_forward_pre_hook(lambda m, a, kw: tokens.append(int(kw["input_ids"].numel())),
                                             with_kwargs=True)
        assert not shared or share_prompts(base)
        model = get_peft_model(base, LoraConfig(r=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
        model.train()
        with completion_tokens_only():
            out = model(input_ids=input_ids, attention_mask=batch["attention_mask"], labels=labels,
                        fused_lm_head=True, use_cache=False)
        (out.log_probs.sum() + out.entropy.sum()).backward()
        grads = torch.cat([p.grad.flatten() for n, p in model.named_parameters() if "lora_" in n])
        return out, grads, tokens[0]

    trl_layout, trl_grads, trl_tokens = score(False)
    packed, packed_grads, packed_tokens = score(True)
    assert packed.log_probs.shape == trl_layout.log_probs.shape == (6, batch["input_ids"].shape[1] - 1)
    for field in ("log_probs", "entropy", "mean_logits"):
        assert torch.allclose(getattr(packed, field), getattr(trl_layout, field), atol=1e-4), field
    assert torch.equal(packed.is_top1, trl_layout.is_top1)
    assert ((packed.log_probs != 0) == (labels[:, 1:] != -100)).all()  # scores exactly where TRL has labels
    assert (packed_grads - trl_grads).norm() < 1e-4 * trl_grads.norm()  # float summation order only
    prompt = sum(len(e["prompt_ids"]) for e in examples)
    print(f"\nbackbone tokens: TRL layout {trl_tokens}, packed {packed_tokens} (prompt tokens {prompt})")
    assert packed_tokens < trl_tokens - prompt // 2

    other = batch["input_ids"].clone()
    other[3, 0] = other[3, 0] + 1  # the first pair's rejected row has another prompt: not a pair
    assert score(True, other)[2] == trl_tokens


def test_deepspeed_zero2_on_two_cpu_workers_resumes_every_rank_from_its_own_partition(ray_session, smollm2_dir,
                                                                                      tmp_path, no_leftovers):
    """DPO under DeepSpeed ZeRO-2 (its CPU accelerator, gloo) on 2 workers, one SIGKILLed after the
    periodic checkpoints start. Each rank's optimizer partition must be in the reported checkpoint
    (rank 0's alone made every restart fail: rank 1 found no ``zero_pp_rank_1_…``), and the
    restarted group resumes and ends with equal adapters on both ranks.

    It starts, as iteration t >= 2 of the loop does, from a saved adapter (here one with random
    LoRA weights): its LoRA parameters at the start must be exactly that adapter's — neither a
    fresh adapter (LoRA B zero) nor a frozen "ref" copy beside it (TRL 1.16 adds one when handed a
    PeftModel: the reference must stay the base model)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from coevo_ray.hardware import TrainLayout
    from coevo_ray.runtime import parameters_digest

    pairs, _ = _pairs(smollm2_dir, n=8)
    cfg = LLMTrainConfig(max_steps=3, per_device_batch_size=2, learning_rate=1e-3, num_workers=2, max_length=384,
                         checkpoint_every=1, lora_r=8)
    torch.manual_seed(1)
    previous = get_peft_model(AutoModelForCausalLM.from_pretrained(str(smollm2_dir), dtype=torch.float32),
                              LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, task_type="CAUSAL_LM",
                                         target_modules=list(cfg.lora_target_modules), init_lora_weights=False))
    previous.save_pretrained(tmp_path / "previous")
    previous_digest = parameters_digest(previous, "lora_")
    layout = TrainLayout(num_workers=2, use_gpu=False, cpus_per_worker=1.0, backend="gloo", deepspeed=True)
    storage = tmp_path / "ray"
    killer, killed = kill_a_train_worker_after_checkpoints(storage)
    adapter, metrics = train_dpo(str(smollm2_dir), pairs, tmp_path / "adapter", cfg, storage_path=str(storage),
                                 layout=layout, init_adapter_dir=str(tmp_path / "previous"))
    killer.join(timeout=5)
    print("\nDeepSpeed DPO metrics:", json.dumps({k: metrics[k] for k in ("steps", "resumed_from_step",
                                                                         "distributed_type")}))
    assert "pid" in killed, "no Ray Train worker was killed"
    assert metrics["distributed_type"].endswith("DEEPSPEED"), metrics["distributed_type"]
    assert {"zero_pp_rank_0_mp_rank_00_optim_states.pt", "zero_pp_rank_1_mp_rank_00_optim_states.pt"} <= killed["files"]
    assert metrics["steps"] == 3 and 1 <= metrics["resumed_from_step"] < 3, metrics
    assert metrics["initial_digest"] == previous_digest, "DPO did not start from the saved adapter alone"
    digests = metrics["rank_digests"]
    assert len(digests) == 2 and digests[0] == digests[1] != metrics["initial_digest"]
    assert json.loads((adapter / "adapter_config.json").read_text())["r"] == 8
