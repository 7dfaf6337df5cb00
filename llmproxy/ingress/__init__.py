"""Ingress formats: what clients speak besides OpenAI Chat Completions.

One pure module per client format (no I/O, no clock, no aiohttp/asyncio):
the client's request → the internal OpenAI chat body, and the internal
OpenAI chat answer or stream → the client's format. Every field translates
or is refused by name (a 400 naming it); nothing is silently dropped. The
OpenAI chat ingress is the identity, so it has no module here.
"""
