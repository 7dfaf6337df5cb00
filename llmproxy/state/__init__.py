"""State that outlives a request: the Redis connection shared by a fleet
(``redis``), per-key counters and spend on it (``counters``)."""
