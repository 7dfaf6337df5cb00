"""The one outbound seam: every byte the proxy sends out goes through here.

- ``client``: ``Upstream`` (the pools, ``open()``) and the
  ``UpstreamResponse`` interface every transport answers with;
- ``http1``: the deployments' HTTP/1.1 connections (keep-alive pool, aiohttp's C parser);
- ``deadlines``: first-byte / idle / total timeouts, one sweeping timer;
- ``errors``: aiohttp errors and deadline cancellations → our errors, once;
- ``mock``: the in-process transport for ``type: mock`` deployments;
- ``images``: image URLs fetched (SSRF-checked) for providers that take only
  inline images, on a pooled session the ``Upstream`` owns;
- ``documents``: small documents the proxy needs itself (the JWKS of
  ``auth.jwt.jwks_url``), bounded, on the deployments' pooled session.
"""

from .client import Upstream, UpstreamResponse
from .http1 import HTTPResponse
from .deadlines import Deadline, Deadlines
from .images import RemoteImages

__all__ = ["Deadline", "Deadlines", "HTTPResponse", "RemoteImages", "Upstream", "UpstreamResponse"]
