"""Where the Gemini API (``type: gemini``) and Vertex AI (``type: vertex``) differ: URL, auth, embeddings.

Checked against googleapis/python-genai: ``_api_client.py`` (Vertex location
defaults to ``global`` on host ``aiplatform.googleapis.com``; regional hosts
``{location}-aiplatform.googleapis.com``, multi-regions ``aiplatform.{us,eu}.rep.googleapis.com``)
and ``models.py`` (``embed_content`` posts ``:batchEmbedContents`` to the
Gemini API and ``:predict`` to Vertex). Pure: no I/O, inputs never mutated.

Vertex auth: with ``project`` set, ``api_key``/``api_key_file`` holds an
OAuth2 access token sent as ``Authorization: Bearer`` (a mounted token file
that rotates is re-read when the config reloads); without ``project`` the key
is a Vertex express-mode API key (``x-goog-api-key``, no project path).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from ..config.schema import key
from ..config.tree import DeploymentConfig
from ..errors import UpstreamProtocolError
from . import answers as a
from . import translate as t

GEMINI_VERSION = "v1beta"
VERTEX_VERSION = "v1"
VERTEX_GLOBAL = "https://aiplatform.googleapis.com"
_VERSIONED = re.compile(r"/v\d+(?:alpha|beta)?\d*$")


@dataclass(frozen=True, slots=True)
class GeminiOptions(t.ImageUrlOptions):
    api_version: str | None = key(None, kind="str", nonempty=True, help=f"default {GEMINI_VERSION}")


@dataclass(frozen=True, slots=True)
class VertexOptions(t.ImageUrlOptions):
    # With project: api_key/api_key_file is an OAuth2 access token (Bearer);
    # without: a Vertex express-mode API key.
    project: str | None = key(None, kind="str", nonempty=True,
                              help="GCP project; with it api_key is an OAuth2 access token, without it an "
                                   "express-mode API key")
    location: str | None = key(None, kind="str", nonempty=True, help="region, or global (the default)")
    api_version: str | None = key(None, kind="str", nonempty=True, help=f"default {VERTEX_VERSION}")
    quota_project: str | None = key(None, kind="str", nonempty=True, help="sent as x-goog-user-project")


def model_url(dep: DeploymentConfig, method: str) -> str:
    """``…/{models/x | projects/p/locations/l/publishers/google/models/x}:{method}``."""
    p = dep.provider
    model = dep.model
    o = p.options
    if p.type == "vertex":
        v = o if isinstance(o, VertexOptions) else VertexOptions()
        location = v.location or "global"
        base = p.base_url
        if base == VERTEX_GLOBAL and location != "global":
            base = (f"https://aiplatform.{location}.rep.googleapis.com" if location in ("us", "eu")
                    else f"https://{location}-aiplatform.googleapis.com")
        if not _VERSIONED.search(base):
            base = f"{base}/{v.api_version or VERTEX_VERSION}"
        if model.startswith("projects/"):
            path = model
        else:
            if model.startswith("publishers/"):
                resource = model
            elif "/" in model:
                publisher, _, name = model.partition("/")
                resource = f"publishers/{publisher}/models/{name}"
            else:
                resource = f"publishers/google/models/{model}"
            project = v.project
            path = f"projects/{project}/locations/{location}/{resource}" if project else resource
    else:
        base = p.base_url
        if not _VERSIONED.search(base):
            version = o.api_version if isinstance(o, GeminiOptions) else None
            base = f"{base}/{version or GEMINI_VERSION}"
        path = _gemini_model(model)
    return f"{base}/{quote(path, safe='/@')}:{method}"


def _gemini_model(model: str) -> str:
    return model if model.startswith(("models/", "tunedModels/")) else f"models/{model}"


def request_headers(dep: DeploymentConfig, accept: str = "application/json") -> dict[str, str]:
    p = dep.provider
    o = p.options
    headers = {"Content-Type": "application/json", "Accept": accept}
    if p.api_key:
        if isinstance(o, VertexOptions) and o.project:
            headers["Authorization"] = f"Bearer {p.api_key}"
        else:
            headers["x-goog-api-key"] = p.api_key
    if isinstance(o, VertexOptions) and (quota := o.quota_project):
        headers["x-goog-user-project"] = quota
    headers.update(p.headers)
    return headers


# --------------------------------------------------------------------------- embeddings


def embeddings_method(dep: DeploymentConfig) -> str:
    return "predict" if dep.provider.type == "vertex" else "batchEmbedContents"


def embeddings_body(dep: DeploymentConfig, body: Mapping[str, Any]) -> dict[str, Any]:
    texts = t.embedding_input(body, t.EMBEDDING_FIELDS, dep.provider.type)
    dims = t.integer(body, "dimensions")
    if dep.provider.type == "vertex":
        out: dict[str, Any] = {"instances": [{"content": s} for s in texts]}
        if dims is not None:
            out["parameters"] = {"outputDimensionality": dims}
        return out
    model = _gemini_model(dep.model)
    requests = []
    for s in texts:
        r: dict[str, Any] = {"model": model, "content": {"parts": [{"text": s}]}}
        if dims is not None:
            r["outputDimensionality"] = dims
        requests.append(r)
    return {"requests": requests}


def embeddings_answer(doc: Mapping[str, Any], model: str, fmt: str) -> tuple[bytes, dict[str, Any]]:
    """``batchEmbedContents`` or Vertex ``predict`` answer → OpenAI ``list`` of embeddings and usage."""
    vectors: list[Any] = []
    tokens = 0
    if isinstance(doc.get("predictions"), list):
        for pred in doc["predictions"]:
            emb = pred.get("embeddings") if isinstance(pred, dict) else None
            vectors.append(emb.get("values") if isinstance(emb, dict) else None)
            stats = emb.get("statistics") if isinstance(emb, dict) else None
            if isinstance(stats, dict):
                tokens += a.count(stats, "token_count")
    elif isinstance(doc.get("embeddings"), list):
        vectors = [e.get("values") if isinstance(e, dict) else None for e in doc["embeddings"]]
        tokens = a.count(doc.get("usageMetadata") or {}, "promptTokenCount")
    if not vectors or not all(isinstance(v, list) for v in vectors):
        raise UpstreamProtocolError("gemini answered 200 without embedding values")
    return a.embeddings_list(vectors, model, fmt, tokens)
