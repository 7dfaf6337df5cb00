"""Stored Responses across a ``--workers`` group without Redis: each worker
keeps its own (``MemoryStore``) and asks its siblings on a miss.

The kernel hands each connection to any worker, so a follow-up
(``previous_response_id``, ``GET``/``DELETE /v1/responses/{id}``) often
reaches a worker that did not make the response. Invariants:
- a response lives in the worker that made it, and only there (a DELETE has
  one place to go; nothing is copied);
- a lookup that misses locally asks every sibling at once over its private
  unix socket (``siblings.py``'s actions, bounded by its ``ASK_TIMEOUT``);
  the sibling that holds it answers with it;
- a sibling that does not answer (restarting, stuck) turns a miss into a 503
  (``StoreUnavailable``), never a "not found": it may hold the response;
- the private route answers from the worker's own store only, so asking
  never goes round the group twice.
With ``state.redis`` the group shares the Redis store instead (``backend_of``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from .response_store import RESPONSE_STORE, MemoryStore, NotKept, Stored, StoreUnavailable
from .siblings import Siblings

# The actions (siblings.py: POST /action/{name}?id=...) a sibling answers from its own store.
GET, DELETE = "response_get", "response_delete"


class GroupStore:
    kind = "memory"

    def __init__(self, local: MemoryStore, siblings: Siblings) -> None:
        self.local = local
        self.siblings = siblings

    def save(self, stored: Stored) -> None:
        self.local.save(stored)

    async def put(self, stored: Stored) -> None:
        await self.local.put(stored)

    async def get(self, rid: str) -> Stored | NotKept | None:
        found = await self.local.get(rid)
        if found is not None:
            return found
        answers = await self._ask(GET, rid)
        for doc in answers:
            if doc.get("found"):
                return Stored(doc["response"], doc["context"])
        return None

    async def delete(self, rid: str) -> bool:
        if await self.local.delete(rid):
            return True
        return any(doc.get("deleted") for doc in await self._ask(DELETE, rid))

    async def _ask(self, action: str, rid: str) -> list[dict[str, Any]]:
        answers = await self.siblings.act(action, {"id": rid})
        docs = [doc for doc in answers.values() if isinstance(doc, dict)]
        if len(docs) < len(self.siblings.others()) and not any(d.get("found") or d.get("deleted") for d in docs):
            raise StoreUnavailable(rid, why="another worker of this group, which may hold it, did not answer")
        return docs

    async def close(self) -> None:
        await self.local.close()


def _own(main: web.Application) -> MemoryStore | None:
    store = main[RESPONSE_STORE]
    if isinstance(store, GroupStore):
        return store.local
    return store if isinstance(store, MemoryStore) else None


async def sibling_get(main: web.Application, query: Mapping[str, str]) -> dict[str, Any]:
    """A sibling asks for a response this worker may hold: always an answer, ``found`` says."""
    own = _own(main)
    found = await own.get(query.get("id", "")) if own is not None else None
    if isinstance(found, Stored):
        return {"found": True, "response": found.response, "context": found.context}
    return {"found": False}


async def sibling_delete(main: web.Application, query: Mapping[str, str]) -> dict[str, Any]:
    own = _own(main)
    return {"deleted": own is not None and await own.delete(query.get("id", ""))}


ACTIONS = {GET: sibling_get, DELETE: sibling_delete}
