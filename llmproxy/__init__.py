"""llmproxy: a lightweight OpenAI-compatible sidecar proxy for LLM APIs."""

__version__ = "0.1.0"
