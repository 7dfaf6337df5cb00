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


def hash64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


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
        if not self._hashes:
            return None
        n = len(self._hashes)
        start = bisect.bisect(self._hashes, hash64(key)) % n
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
