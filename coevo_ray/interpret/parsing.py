"""Split an LLM answer into reasoning and keywords, without ever raising on model output.

Small models ramble: they repeat a phrase until the token limit, skip the ``Keywords:`` line, or
list keywords as bullets, or copy the prompt's worked example instead of reading the text. Each
fallback taken is recorded so a run can report how often the model missed the format.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

MAX_KEYWORDS = 8
#: An answer using this many content words of the worked example that its text lacks copied it.
COPIED_EXAMPLE_WORDS = 2

_REASONING = re.compile(r"^\W*reasoning\W*:?\s*", re.IGNORECASE)
_KEYWORDS = re.compile(r"(?im)^[\s*#>_-]*key\s*words?\s*[*_]*\s*:\s*[*_]*")
_SPLIT = re.compile(r"\s*(?:[,;|/]|\n|\s-\s|\band\b(?=\s*$))\s*")
_BULLET = re.compile(r"^\s*(?:[-*•]+|\d+[.)])\s*")
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]{2,}")

# Common English function words: the fallback's keywords should be content words.
STOPWORDS = frozenset(
    """a about above after again against all also am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for from
    further had has have having he her here hers herself him himself his how i if in into is it its
    itself just me more most my myself no nor not now of off on once only or other our ours
    ourselves out over own same she should so some such than that the their theirs them themselves
    then there these they this those through to too under until up very was we were what when where
    which while who whom why will with would you your yours yourself yourselves text user reasoning
    keywords keyword likely seems appears refers asking about wants want based given means""".split()
)


@dataclass
class Interpretation:
    """A parsed answer. ``fallback`` names a format failure (``None`` when the answer kept the
    format); ``repaired`` marks answers whose runaway repetition was cut."""

    reasoning: str
    keywords: list[str] = field(default_factory=list)
    fallback: str | None = None
    repaired: bool = False

    @property
    def text(self) -> str:
        """Canonical form that is embedded and used in DPO pairs (rambling cut off)."""
        return f"Reasoning: {self.reasoning}\nKeywords: {', '.join(self.keywords)}".strip()


def _cut_repetition(text: str) -> tuple[str, bool]:
    """Drop sentences seen before (runaway generation) and collapse stuttered phrases; newlines
    are kept because the ``Keywords:`` line is found by them."""
    seen: set[str] = set()
    repeated = False
    out_lines: list[str] = []
    for line in text.split("\n"):
        kept: list[str] = []
        for piece in re.split(r"(?<=[.!?])\s+", line):
            key = re.sub(r"\W+", " ", _REASONING.sub("", piece).lower()).strip()
            if key and key in seen and not _KEYWORDS.match(piece):
                repeated = True
                continue
            if key:
                seen.add(key)
            kept.append(piece)
        if kept or not line.strip():
            out_lines.append(" ".join(kept))
    out = "\n".join(out_lines)
    # A word or short phrase stuttered many times inside one sentence.
    stutter = re.compile(r"\b((?:\w+\W+){1,4}?)\1{3,}", re.IGNORECASE)
    if stutter.search(out):
        out = stutter.sub(r"\1", out)
        repeated = True
    return out.strip(), repeated


def clean_keywords(raw: list[str], limit: int = MAX_KEYWORDS) -> list[str]:
    out: list[str] = []
    seen: set[str] = set()
    for item in raw:
        kw = _BULLET.sub("", item).strip().strip("\"'`*_.:()[]{}").strip()
        kw = re.sub(r"\s+", " ", kw)
        if not kw or len(kw) > 40 or kw.lower() in seen or not re.search(r"[A-Za-z0-9]", kw):
            continue
        seen.add(kw.lower())
        out.append(kw)
        if len(out) == limit:
            break
    return out


def keywords_from_text(text: str, limit: int = MAX_KEYWORDS) -> list[str]:
    """Most frequent content words, in order of first appearance among ties."""
    words = [w.lower() for w in _WORD.findall(text)]
    counts = Counter(w for w in words if w not in STOPWORDS)
    first = {w: i for i, w in reversed(list(enumerate(words)))}
    ranked = sorted(counts, key=lambda w: (-counts[w], first[w]))
    return ranked[:limit]


def content_words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z0-9]+", text.lower()) if len(w) > 2 and w not in STOPWORDS}


def copied_words(answer: str, example: str, source_text: str) -> set[str]:
    """Content words of a prompt's worked ``example`` that ``answer`` uses and its text does not."""
    return (content_words(answer) & content_words(example)) - content_words(source_text)


def parse_interpretation(output: str, source_text: str = "", example: str = "") -> Interpretation:
    """Parse ``Reasoning: … Keywords: …``; fall back to keywords mined from the answer (or, for an
    empty answer, from the source text). An answer that copied the prompt's worked ``example``
    (``COPIED_EXAMPLE_WORDS`` of its words, absent from the text) keeps nothing of itself: its
    keywords are mined from the text, so a cluster never forms around the example."""
    if not isinstance(output, str) or not output.strip():
        return Interpretation("", keywords_from_text(source_text), fallback="empty")
    if example and len(copied_words(output, example, source_text)) >= COPIED_EXAMPLE_WORDS:
        return Interpretation("", keywords_from_text(source_text), fallback="copied_example")
    text, repeated = _cut_repetition(output.strip())
    match = _KEYWORDS.search(text)
    if match:
        reasoning = _REASONING.sub("", text[: match.start()].strip()).strip()
        tail = text[match.end():].strip()
        # Keywords run to the end of the line, or over bullet lines that follow.
        lines = [line for line in tail.split("\n") if line.strip()] or [""]
        if len(lines) > 1 and _BULLET.match(lines[0]) and _BULLET.match(lines[1]):
            items = []
            for line in lines:
                if not _BULLET.match(line):
                    break
                items.append(line)
        else:  # "a, b, c" or an inline numbered list "1. a 2. b"
            items = _SPLIT.split(re.sub(r"\s\d+[.)]\s", ", ", " " + lines[0]).strip())
        keywords = clean_keywords(items)
        if keywords:
            return Interpretation(reasoning or tail, keywords, None, repeated)
        return Interpretation(reasoning, _mined_keywords(reasoning, source_text), "empty_keywords", repeated)
    reasoning = _REASONING.sub("", text).strip()
    return Interpretation(reasoning, _mined_keywords(reasoning, source_text), "no_keywords_line", repeated)


def _mined_keywords(reasoning: str, source_text: str) -> list[str]:
    """Content words of the answer, or of the text when the answer has none ("1 2 3", "...")."""
    return keywords_from_text(reasoning) or keywords_from_text(source_text)


def format_failure(fallbacks: list[str | None]) -> str | None:
    """A warning when *no* answer kept the ``Reasoning/Keywords`` format (``fallbacks`` holds each
    greedy answer's fallback kind, None when it parsed). The run goes on with keywords mined from
    the texts, so nothing finished is lost; the message says what to change."""
    failed = [f for f in fallbacks if f]
    if not fallbacks or len(failed) < len(fallbacks):
        return None
    kinds = ", ".join(f"{k} {failed.count(k)}" for k in sorted(set(failed)))
    return (f"no LLM answer kept the Reasoning/Keywords format ({len(failed)} of {len(fallbacks)} fell back to "
            f"content words of the text: {kinds}); try structured_output=True or another prompt_style")
