"""Per-deployment protection: circuit breaker, concurrency gate, rate limits, retry budget."""
