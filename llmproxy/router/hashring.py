"""A consistent-hash ring with virtual nodes.

Each deployment owns ``vnodes × weight`` points on a 64-bit ring; a key maps
to the first point clockwise from its hash. Adding or removing one of n
deployments moves only the keys of that deployment's arcs, about 1/n of them.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")


# Characters of a client's session key that are hashed; longer keys are told
# apart by this prefix and their length.
SESSION_KEY_HASHED = 64 * 1024


def hash64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def session_digest(key: str) -> bytes:
    """16 bytes that stand for a client-supplied session key of any length.

    What sticky routing stores and where consistent hashing looks: memory per
    session is fixed, however long the ``user`` a client sends. Two keys equal
    in length and in their first ``SESSION_KEY_HASHED`` characters share a
    deployment, which stickiness can afford (it is routing, not identity).
    """
    h = hashlib.blake2b(len(key).to_bytes(8, "big"), digest_size=16)
    h.update(key[:SESSION_KEY_HASHED].encode("utf-8", "surrogatepass"))
    return h.digest()


def session_point(digest: bytes) -> int:
    """A session digest's position on the ring."""
    return int.from_bytes(digest[:8], "big")


class HashRing(Generic[T]):
    def __init__(self, items: Sequence[T], key: Callable[[T], str], weight: Callable[[T], float],
                 vnodes: int = 160) -> None:
        points: list[tuple[int, int]] = []
        for index, item in enumerate(items):
            for v in range(max(int(round(vnodes * weight(item))), 1)):
                points.append((hash64(f"{key(item)}#{v}"), index))
        points.sort()
        self._hashes = [h for h, _ in points]
        self._owners = [i for _, i in points]
        self._items = list(items)

    def walk(self, key: str) -> list[T]:
        """Distinct items in ring order starting at ``key``'s point."""
        if not self._hashes:
            return []
        start = bisect.bisect(self._hashes, hash64(key)) % len(self._hashes)
        seen: set[int] = set()
        out: list[T] = []
        n = len(self._hashes)
        for i in range(n):
            owner = self._owners[(start + i) % n]
            if owner not in seen:
                seen.add(owner)
                out.append(self._items[owner])
                if len(seen) == len(self._items):
                    break
        return out

    def lookup(self, key: str, accept: Callable[[T], bool] = lambda _: True) -> T | None:
        return self.lookup_point(hash64(key), accept)

    def lookup_point(self, point: int, accept: Callable[[T], bool] = lambda _: True) -> T | None:
        """The first accepted item clockwise from ``point`` (a 64-bit hash)."""
        if not self._hashes:
            return None
        n = len(self._hashes)
        start = bisect.bisect(self._hashes, point) % n
        tried: set[int] = set()
        for i in range(n):
            owner = self._owners[(start + i) % n]
            if owner in tried:
                continue
            item = self._items[owner]
            if accept(item):
                return item
            tried.add(owner)
            if len(tried) == len(self._items):
                break
        return None
