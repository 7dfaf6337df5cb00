"""The one outbound seam: every byte the proxy sends out goes through here.

- ``client``: ``Upstream`` (the pooled sessions, ``open()``) and the
  ``UpstreamResponse`` interface every transport answers with;
- ``deadlines``: first-byte / idle / total timeouts, one sweeping timer;
- ``errors``: aiohttp errors and deadline cancellations → our errors, once;
- ``mock``: the in-process transport for ``type: mock`` deployments;
- ``images``: image URLs fetched (SSRF-checked) for providers that take only
  inline images, on a pooled session the ``Upstream`` owns;
- ``documents``: small documents the proxy needs itself (the JWKS of
  ``auth.jwt.jwks_url``), bounded, on the deployments' pooled session.
"""

from .client import HTTPResponse, Upstream, UpstreamResponse
from .deadlines import Deadline, Deadlines
from .images import RemoteImages

__all__ = ["Deadline", "Deadlines", "HTTPResponse", "RemoteImages", "Upstream", "UpstreamResponse"]
