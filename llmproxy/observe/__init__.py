"""Seeing the proxy work: per-request observation (``observation``), metrics,
redacted logs and the access line (``logs``, ``redact``), optional tracing."""
