"""Prompt templates for the interpretation step, rendered through the model's chat template.

``paper`` is the task-aware template T_DESC of section 3.1, verbatim; ``agnostic`` is the
task-agnostic template of section 4.2.5. ``guided`` is ours, for small instruct models (issue 9):
instructions in the system turn, a worked example as a previous exchange, and the text first and
delimited in the user turn, so a 135M model analyses the text instead of greeting the user.
``exemplars`` is ``guided`` plus a few unlabeled texts drawn from the corpus itself in the system
turn, so the model sees what kind of collection it is reading (banking chat, emotions, ...).
``concise`` is ``guided`` without the worked example: for structured output, where the grammar
already holds the answer to the format, it is a shorter prompt with no example words to copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from coevo_ray.choices import PromptStyle, options
from coevo_ray.errors import InputError

PAPER_TEMPLATE = (
    "You are very good at natural language understanding.\n\n"
    "For a given text, analyze its underlying meaning to present a better understanding. "
    "Remember that you should dissect the text in terms of {task}. "
    "You need to infer what {standard} the text is about. "
    "Show your reasoning process and summarize by listing at most 8 keywords that reflect it. "
    "Do not be too lengthy and strictly follow the specified format:\n"
    "Reasoning: ...\n"
    "Keywords: ...\n"
    "Text: {text}"
)

AGNOSTIC_TEMPLATE = (
    "You are very good at natural language understanding.\n\n"
    "For a given text, analyze its underlying meaning to present a better understanding. "
    "Show your reasoning process and summarize by listing at most 8 keywords that reflect it. "
    "Do not be too lengthy and strictly follow the specified format:\n"
    "Reasoning: ...\n"
    "Keywords: ...\n"
    "Text: {text}"
)

GUIDED_SYSTEM = (
    "You analyze short texts for clustering by {task}. For the text the user gives, infer what "
    "{standard} it is about. Answer in exactly two lines:\n"
    "Reasoning: one sentence about the {standard}.\n"
    "Keywords: at most 8 comma-separated keywords."
)
GUIDED_EXAMPLE_TEXT = "06 Saturn Ion 2 2.2l P0101"
GUIDED_EXAMPLE_ANSWER = (
    "Reasoning: The text refers to a Saturn Ion car and the diagnostic trouble code P0101 of its "
    "air flow sensor.\n"
    "Keywords: Saturn, Ion, engine, diagnostic, code, air flow, trouble"
)
GUIDED_USER = '<text>\n{text}\n</text>\nWhat {standard} is this text about?'
EXEMPLARS_HEADER = "\n\nThe texts come from one collection; some of them, for context:\n"

#: The answer shape for vLLM structured output: one line of reasoning (<= 200 characters) and at
#: most 8 keywords (<= 24 characters each), about 100 tokens at most.
#: Each keyword starts with a letter or digit, so "Keywords: ..." copied from a template is ruled out.
INTERPRETATION_REGEX = r"Reasoning: [^\n]{8,200}\nKeywords: [A-Za-z0-9][^\n,]{0,23}(, [A-Za-z0-9][^\n,]{0,23}){0,7}"
#: Characters per token assumed when sizing the answer to ``max_tokens`` (English prose is ~4 with
#: these tokenizers; lower is safer), and the tokens of the two fixed prefixes.
_CHARS_PER_TOKEN, _PREFIX_TOKENS = 3.5, 6


def interpretation_regex(max_tokens: int) -> str:
    """:data:`INTERPRETATION_REGEX` shrunk so that an answer fits in ``max_tokens``: the grammar
    ends the reasoning line and the keyword list in time, instead of ``max_tokens`` cutting the
    answer mid-line (a cut answer is never chosen nor trained on). 45% of the characters go to the
    reasoning, the rest to 2-8 keywords. From about 150 tokens on it is the full shape."""
    chars = int(_CHARS_PER_TOKEN * max(max_tokens - _PREFIX_TOKENS, 8))
    reasoning = min(200, max(16, int(0.45 * chars)))
    budget = chars - reasoning
    n_keywords = min(8, max(2, budget // 18))
    keyword = min(24, max(8, budget // n_keywords - 2))
    return (rf"Reasoning: [^\n]{{8,{reasoning}}}\nKeywords: [A-Za-z0-9][^\n,]{{0,{keyword - 1}}}"
            rf"(, [A-Za-z0-9][^\n,]{{0,{keyword - 1}}}){{0,{n_keywords - 1}}}")


PROMPT_STYLES = options(PromptStyle)

#: Not an interpretation style: the request that names a cluster from its keywords and texts.
NAMING_STYLE = "name"
NAMING_SYSTEM = (
    "You name groups of texts that were clustered by {task}. Given a group's keywords and some of its "
    "texts, reply with one short name (2 to 5 words) for the {standard} they share, and nothing else."
)
NAMING_EXAMPLE = ("Keywords: refund, return, money back, order\nTexts:\n- I want my money back for this jacket\n"
                  "- How do I send an order back?", "Refunds and returns")
#: With structured output the name is one capitalised phrase of at most 40 characters (about
#: 6 words, within the naming request's 16 tokens), without commas: a name is not a word list.
NAME_REGEX = r"[A-Z][A-Za-z0-9&' /-]{2,39}"


@dataclass(frozen=True)
class TaskDescription:
    """``DESC = "<TASK>: <STANDARD>"`` of the paper, e.g. ``"intent: user intent"``."""

    task: str
    standard: str

    @classmethod
    def parse(cls, desc: str) -> "TaskDescription":
        if not isinstance(desc, str) or ":" not in desc:
            raise InputError(f'task description must look like "<task>: <standard>", got {desc!r}')
        task, standard = (part.strip() for part in desc.split(":", 1))
        if not task or not standard:
            raise InputError(f'task description must look like "<task>: <standard>", got {desc!r}')
        return cls(task, standard)

    def __str__(self) -> str:
        return f"{self.task}: {self.standard}"


def exemplar_texts(texts: Sequence[str], n: int, seed: int = 0) -> tuple[str, ...]:
    """A seeded sample of ``n`` distinct corpus texts for the "exemplars" style (no labels used)."""
    import numpy as np

    distinct = list(dict.fromkeys(t for t in texts if t.strip()))
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(distinct), size=min(n, len(distinct)), replace=False)
    return tuple(distinct[i] for i in sorted(picked))


def build_messages(text: str, desc: TaskDescription, style: str = "paper",
                   exemplars: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Chat messages for one text; ``exemplars`` (corpus texts, no labels) only for that style."""
    if style == "paper":
        return [{"role": "user", "content": PAPER_TEMPLATE.format(task=desc.task, standard=desc.standard, text=text)}]
    if style == "agnostic":
        return [{"role": "user", "content": AGNOSTIC_TEMPLATE.format(text=text)}]
    if style == NAMING_STYLE:
        return [{"role": "system", "content": NAMING_SYSTEM.format(task=desc.task, standard=desc.standard)},
                {"role": "user", "content": NAMING_EXAMPLE[0]}, {"role": "assistant", "content": NAMING_EXAMPLE[1]},
                {"role": "user", "content": text}]
    if style in ("guided", "exemplars", "concise"):
        fmt = {"task": desc.task, "standard": desc.standard}
        system = GUIDED_SYSTEM.format(**fmt)
        if style == "concise":
            return [{"role": "system", "content": system},
                    {"role": "user", "content": GUIDED_USER.format(text=text, **fmt)}]
        if style == "exemplars":
            if not exemplars:
                raise InputError("prompt style 'exemplars' needs corpus texts to show (n_exemplars >= 1)")
            system += EXEMPLARS_HEADER + "\n".join(f"- {' '.join(e.split())[:200]}" for e in exemplars)
        return [
            {"role": "system", "content": system},
            {"role": "user", "content": GUIDED_USER.format(text=GUIDED_EXAMPLE_TEXT, **fmt)},
            {"role": "assistant", "content": GUIDED_EXAMPLE_ANSWER},
            {"role": "user", "content": GUIDED_USER.format(text=text, **fmt)},
        ]
    raise InputError(f"unknown prompt style {style!r}; choose one of {PROMPT_STYLES}")


def worked_example(style: str) -> str:
    """The worked example a prompt style shows (text and answer), "" for styles without one:
    answers are checked against it for copied words (``parse_interpretation``)."""
    if style in ("guided", "exemplars"):
        return GUIDED_EXAMPLE_TEXT + "\n" + GUIDED_EXAMPLE_ANSWER
    return ""


def render_prompt(tokenizer, text: str, desc: TaskDescription, style: str = "paper",
                  exemplars: Sequence[str] = ()) -> str:
    """The exact prompt string the engine sees; DPO trains on the same string."""
    messages = build_messages(text, desc, style, exemplars)
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return "\n\n".join(m["content"] for m in messages) + "\n\n"
