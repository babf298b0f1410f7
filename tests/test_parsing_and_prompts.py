import pytest

from coevo_ray.errors import InputError
from coevo_ray.interpret import TaskDescription, build_messages, parse_interpretation, render_prompt
from coevo_ray.interpret.prompts import PAPER_TEMPLATE


def test_well_formed_answer():
    out = parse_interpretation("Reasoning: The user wants to close the account.\nKeywords: account, closure, Account, request")
    assert out.reasoning == "The user wants to close the account."
    assert out.keywords == ["account", "closure", "request"]  # de-duplicated case-insensitively
    assert out.fallback is None and not out.repaired
    assert out.text == "Reasoning: The user wants to close the account.\nKeywords: account, closure, request"


def test_keyword_cap_bullets_and_numbered_lists():
    assert len(parse_interpretation("Reasoning: r\nKeywords: " + ", ".join(f"k{i}" for i in range(20))).keywords) == 8
    assert parse_interpretation("Reasoning: r\n\n**Keywords:**\n- card\n- arrival\n- delay\nNote: x").keywords == ["card", "arrival", "delay"]
    assert parse_interpretation("Reasoning: r\nKeywords: 1. top up 2. card").keywords == ["top up", "card"]


def test_runaway_repetition_is_cut():
    answer = "Reasoning: It is about cards. It is about cards. It is about cards.\nKeywords: card, card, loss"
    out = parse_interpretation(answer)
    assert out.reasoning == "It is about cards." and out.keywords == ["card", "loss"] and out.repaired


def test_missing_keywords_line_falls_back_to_content_words():
    out = parse_interpretation("The customer has lost the card and wants the card blocked.")
    assert out.fallback == "no_keywords_line"
    assert out.keywords[0] == "card" and "customer" in out.keywords and "the" not in out.keywords


def test_empty_answer_uses_source_text():
    out = parse_interpretation("   ", source_text="Please block my stolen credit card")
    assert out.fallback == "empty" and "stolen" in out.keywords


@pytest.mark.parametrize("junk", ["Keywords:", "Keywords: , ; ,", "\x00\x01", "Reasoning:" * 50])
def test_never_raises_on_junk(junk):
    out = parse_interpretation(junk, "source words here")
    assert isinstance(out.keywords, list)


def test_paper_template_is_verbatim():
    desc = TaskDescription.parse("intent: user intent")
    msg = build_messages("Please delete my account.", desc, "paper")
    assert msg == [{"role": "user", "content": PAPER_TEMPLATE.format(task="intent", standard="user intent", text="Please delete my account.")}]
    content = msg[0]["content"]
    assert content.startswith("You are very good at natural language understanding.")
    assert "dissect the text in terms of intent. You need to infer what user intent the text is about." in content
    assert content.endswith("Reasoning: ...\nKeywords: ...\nText: Please delete my account.")
    agnostic = build_messages("x", desc, "agnostic")[0]["content"]
    assert "intent" not in agnostic and agnostic.endswith("Text: x")


def test_task_description_validation():
    with pytest.raises(InputError, match="<task>: <standard>"):
        TaskDescription.parse("no colon here")
    with pytest.raises(InputError, match="unknown prompt style"):
        build_messages("x", TaskDescription("a", "b"), "fancy")


def test_rendered_through_the_chat_template(smollm2_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    prompt = render_prompt(tok, "Please delete my account.", TaskDescription.parse("intent: user intent"), "guided")
    assert "<|im_start|>user" in prompt and prompt.rstrip().endswith("<|im_start|>assistant")
    assert "<text>\nPlease delete my account.\n</text>" in prompt


def test_exemplars_style_shows_sampled_corpus_texts():
    from coevo_ray.interpret import exemplar_texts

    corpus = [f"text number {i}" for i in range(50)] + ["text number 3"]
    picked = exemplar_texts(corpus, 5, seed=1)
    assert len(picked) == 5 == len(set(picked)) and picked == exemplar_texts(corpus, 5, seed=1)
    assert picked != exemplar_texts(corpus, 5, seed=2)
    msgs = build_messages("my card is lost", TaskDescription.parse("intent: user intent"), "exemplars", picked)
    assert all(f"- {p}" in msgs[0]["content"] for p in picked)
    assert msgs[-1]["content"].startswith("<text>\nmy card is lost\n</text>")
    with pytest.raises(InputError, match="needs corpus texts"):
        build_messages("x", TaskDescription.parse("intent: user intent"), "exemplars")


def test_llm_output_that_parses_to_nothing_for_every_text_is_named():
    from coevo_ray.interpret.parsing import format_failure

    texts = ["my card was stolen", "how do I top up by bank transfer", "why was I charged twice"]
    junk = ["", "I'm sorry, as an AI I cannot", "1 2 3 4"]
    parsed = [parse_interpretation(j, t) for j, t in zip(junk, texts)]
    assert all(p.fallback for p in parsed) and all(p.keywords for p in parsed)  # the run can go on
    message = format_failure([p.fallback for p in parsed])
    assert message and "no LLM answer kept the Reasoning/Keywords format (3 of 3" in message
    assert "structured_output=True" in message
    good = parse_interpretation("Reasoning: a lost card.\nKeywords: card, stolen", texts[0])
    assert format_failure([p.fallback for p in parsed[:2]] + [good.fallback]) is None


def test_an_answer_copying_the_worked_example_keeps_nothing_of_it():
    """Answers SmolLM2 wrote for bank77 texts under the guided prompt (issue 16: a demo cluster
    formed around "saturn, airflow, recall"): the example's words never reach the keywords."""
    from coevo_ray.interpret.prompts import worked_example

    example = worked_example("guided")
    text = "My card has not arrived yet, when will it come?"
    copied = ("Reasoning: The text refers to a Saturn Ion car and its air flow sensor.\n"
              "Keywords: Saturn, Ion, air flow, sensor, card")
    parsed = parse_interpretation(copied, text, example)
    assert parsed.fallback == "copied_example" and parsed.reasoning == ""
    assert parsed.keywords and not {"saturn", "ion", "air", "flow", "sensor"} & set(parsed.keywords)
    # The same words are the text's own when it has them; one shared word is not a copy.
    own = parse_interpretation(copied, "My 2006 Saturn Ion shows an air flow sensor code", example)
    assert own.fallback is None and own.keywords[:2] == ["Saturn", "Ion"]
    assert parse_interpretation("Reasoning: card delivery.\nKeywords: card, code", text, example).fallback is None
    # Styles without a worked example check nothing.
    assert worked_example("paper") == "" and parse_interpretation(copied, text).fallback is None
