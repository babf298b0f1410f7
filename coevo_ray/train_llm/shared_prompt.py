"""Run each DPO pair's prompt once: chosen and rejected answers share it in one packed sequence.

TRL (1.16) scores a preference batch as ``[prompt + chosen; prompt + rejected]``: every prompt
token goes through the backbone twice per pair, in the policy forward and backward and in the
reference forward. Our prompts are several times longer than the answers, so most of DPO's GEMM
work is the same prompt computed twice (figures: README, "Training"). Here each pair becomes one
sequence

    prompt · chosen answer · last prompt token again · rejected answer

with a block attention mask and position ids that give every token exactly the context it has in
TRL's layout: the chosen answer sees the prompt and its own past; the repeated last prompt token
sits at the prompt's last position and sees the prompt before it, so its hidden state is the one
that predicts the rejected answer's first token; the rejected answer sees the prompt, that token
and its own past, never the chosen answer. The fused LM head scores pre-shifted labels
(``shift_labels``), and the per-token results are put back where TRL's layout has them, so TRL's
loss, metrics and reference pass run unchanged on identical values (up to float summation order).

Written by hand: neither TRL nor transformers shares a prompt between sequences of a batch in
training (TRL 1.16's ``padding_free`` is not offered for DPO). A batch whose pairs do not share a
prompt token for token, or any call that is not TRL's fused scoring, runs the original forward.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

IGNORE = -100  # the label TRL and transformers skip


@dataclass(frozen=True)
class _Pair:
    prompt: int  # prompt tokens
    chosen: int  # chosen answer tokens (the labelled ones, EOS included)
    rejected: int


@dataclass(frozen=True)
class PackedBatch:
    """One packed sequence per pair and what is needed to put its scores back in TRL's layout."""

    input_ids: torch.Tensor  # (pairs, packed length)
    attention_mask: torch.Tensor  # (pairs, 1, packed length, packed length): True / 0 where attended
    position_ids: torch.Tensor
    shift_labels: torch.Tensor  # the token each position predicts, or IGNORE
    pairs: tuple[_Pair, ...]
    scored_length: int  # TRL's per-token width: its padded length - 1

    def unpack(self, per_token: torch.Tensor) -> torch.Tensor:
        """(pairs, packed length) per-token values → TRL's (2 × pairs, length - 1): chosen rows then
        rejected rows, the value for token t at index t - 1, zero where TRL has no label."""
        width, rows = self.scored_length, []
        for side in ("chosen", "rejected"):
            for i, pair in enumerate(self.pairs):
                n = getattr(pair, side)
                # In the packed row, the chosen answer is predicted from positions prompt-1 ...; the
                # rejected answer from the repeated prompt token (after the chosen answer) onwards.
                start = pair.prompt - 1 if side == "chosen" else pair.prompt + pair.chosen
                values = per_token[i, start:start + n]
                before = per_token.new_zeros(pair.prompt - 1)
                after = per_token.new_zeros(width - (pair.prompt - 1) - n)
                rows.append(torch.cat([before, values, after]))
        return torch.stack(rows)


def pack_pairs(input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor,
               mask_dtype: torch.dtype = torch.bool) -> PackedBatch | None:
    """TRL's right-padded ``[prompt + chosen; prompt + rejected]`` batch as one sequence per pair, or
    None when its rows are not pairs sharing an identical, non-empty prompt."""
    rows, length = input_ids.shape
    if rows % 2 or rows == 0:
        return None
    n, pairs = rows // 2, []
    valid = attention_mask.bool()
    labelled = labels != IGNORE
    for i in range(n):
        spans = []
        for r in (i, i + n):
            size = int(valid[r].sum())
            answer = int(labelled[r].sum())
            # Right padding, the answer at the end of the valid tokens and nothing labelled outside it.
            if not valid[r, :size].all() or not labelled[r, size - answer:size].all():
                return None
            spans.append((size - answer, answer))
        (prompt, chosen), (prompt_r, rejected) = spans
        if prompt != prompt_r or prompt == 0 or not torch.equal(input_ids[i, :prompt], input_ids[i + n, :prompt]):
            return None
        pairs.append(_Pair(prompt, chosen, rejected))

    packed_len = max(p.prompt + p.chosen + 1 + p.rejected for p in pairs)
    ids = input_ids.new_zeros(n, packed_len)
    positions = torch.zeros(n, packed_len, dtype=torch.long, device=input_ids.device)
    targets = torch.full((n, packed_len), IGNORE, dtype=labels.dtype, device=labels.device)
    allowed = torch.zeros(n, packed_len, packed_len, dtype=torch.bool, device=input_ids.device)
    for i, p in enumerate(pairs):
        chosen = input_ids[i, p.prompt:p.prompt + p.chosen]
        rejected = input_ids[i + n, p.prompt:p.prompt + p.rejected]
        last = input_ids[i, p.prompt - 1:p.prompt]
        row = torch.cat([input_ids[i, :p.prompt], chosen, last, rejected])
        ids[i, :len(row)] = row
        c0, dup = p.prompt, p.prompt + p.chosen  # where the chosen answer and the repeated token sit
        r0 = dup + 1
        positions[i, :c0 + p.chosen] = torch.arange(c0 + p.chosen)
        positions[i, dup] = p.prompt - 1
        positions[i, r0:r0 + p.rejected] = torch.arange(p.prompt, p.prompt + p.rejected)
        # What each position predicts: the chosen answer from the prompt's last token on, the
        # rejected answer from the repeated token on; an answer's last token predicts nothing.
        if p.chosen:
            targets[i, c0 - 1:c0 - 1 + p.chosen] = chosen
        if p.rejected:
            targets[i, dup:dup + p.rejected] = rejected
        causal = torch.ones(packed_len, packed_len, dtype=torch.bool, device=input_ids.device).tril()
        mask = allowed[i]
        mask[:c0 + p.chosen, :c0 + p.chosen] = causal[:c0 + p.chosen, :c0 + p.chosen]  # prompt + chosen
        mask[dup, :p.prompt - 1] = True  # the repeated token: the prompt before it, and itself
        mask[dup, dup] = True
        mask[r0:r0 + p.rejected, :p.prompt] = True  # the rejected answer: the prompt ...
        mask[r0:r0 + p.rejected, r0:r0 + p.rejected] = causal[:p.rejected, :p.rejected]  # ... and its own past
        for pad in range(r0 + p.rejected, packed_len):  # padding attends to itself only (no empty rows)
            mask[pad, pad] = True
    if mask_dtype == torch.bool:
        mask4d = allowed[:, None]
    else:  # eager attention adds the mask to the scores
        mask4d = torch.zeros(allowed.shape, dtype=mask_dtype, device=input_ids.device)[:, None]
        mask4d.masked_fill_(~allowed[:, None], torch.finfo(mask_dtype).min)
    return PackedBatch(ids, mask4d, positions, targets, tuple(pairs), length - 1)


def share_prompts(model: torch.nn.Module) -> bool:
    """Wrap ``model.forward`` (after TRL's ``add_fused_lm_head``) so that TRL's fused DPO scoring
    runs each pair's prompt once. Other calls (generation, plain forwards) are untouched. Returns
    whether the model's attention takes the packed mask (else nothing is wrapped)."""
    fused = model.forward
    # transformers hands a 4-D mask to SDPA as it is (True = attend) and adds it to the scores in
    # eager attention; flash and flex kernels take no dense mask, so they keep TRL's layout.
    attention = getattr(model.config, "_attn_implementation", None) or "eager"
    if attention not in ("sdpa", "eager"):
        return False
    mask_dtype = torch.bool if attention == "sdpa" else model.dtype

    @functools.wraps(fused)
    def forward(*args, fused_lm_head: bool = False, labels=None, input_ids=None, attention_mask=None, **kwargs):
        packed = None
        if (fused_lm_head and not args and labels is not None and input_ids is not None
                and attention_mask is not None and attention_mask.dim() == 2
                and kwargs.get("shift_labels") is None and kwargs.get("position_ids") is None
                and kwargs.get("inputs_embeds") is None):
            packed = pack_pairs(input_ids, attention_mask, labels, mask_dtype)
        if packed is None:
            return fused(*args, fused_lm_head=fused_lm_head, labels=labels, input_ids=input_ids,
                         attention_mask=attention_mask, **kwargs)
        kwargs.pop("position_ids", None)
        kwargs.pop("shift_labels", None)
        outputs = fused(input_ids=packed.input_ids, attention_mask=packed.attention_mask,
                        position_ids=packed.position_ids, shift_labels=packed.shift_labels, fused_lm_head=True,
                        **kwargs)
        for name in ("log_probs", "entropy", "log_sum_sq_probs", "mean_logits", "is_top1"):
            value = getattr(outputs, name, None)
            if value is not None:
                setattr(outputs, name, packed.unpack(value))
        return outputs

    model.forward = forward
    return True
