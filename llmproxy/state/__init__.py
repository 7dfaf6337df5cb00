"""State that outlives a request: the embedded spend store (``sqlite``); shared counters on Redis."""
