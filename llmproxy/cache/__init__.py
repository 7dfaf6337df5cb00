"""The exact-match response cache: keying, stored forms, backends (memory, Redis)."""
