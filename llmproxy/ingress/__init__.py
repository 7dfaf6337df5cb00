"""Client formats other than OpenAI chat: one pure module each (request in →
the internal OpenAI chat body; internal answers and streams → the format out).
No I/O, no clock: the same rules as ``providers/``."""
