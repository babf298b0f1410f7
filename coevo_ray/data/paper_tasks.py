"""The task descriptions (DESC) of the paper's table 6, keyed by the dataset file's stem."""

PAPER_TASKS: dict[str, str] = {
    "arxiv_s2s": "topic: detailed subject area",
    "reddit": "topic: post topic",
    "stackexchange": "topic: post topic",
    "goemo": "emotion: potential emotion",
    "fewevent": "event type: the event",
    "fewnerd": "entity type: the entity",
    "fewrel": "relation type: the relation",
    "clinc_domain": "utterance scenario: life scenario",
    "massive_domain": "utterance scenario: life scenario",
    "mtop_domain": "utterance scenario: life scenario",
    "clinc_intent": "intent: banking customer purpose",  # verbatim from table 6, although CLINC is not banking
    "massive_intent": "intent: user intent",
    "mtop_intent": "intent: user intent",
    "bank77": "intent: user intent",
}
