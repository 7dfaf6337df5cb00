"""State that outlives a request: the embedded spend store (``sqlite``), the
Redis connection shared by a fleet (``redis``), per-key counters and spend
on it (``counters``)."""
