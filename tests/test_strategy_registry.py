"""The strategy registry: one class per strategy, everything else derived from it."""

from __future__ import annotations

import random

import aiohttp
import pytest

from llmproxy.config import tree as config_module
from llmproxy.config.tree import ConfigError, parse_config
from llmproxy.router import Router, StateRegistry
from llmproxy.router.strategies import REGISTRY, Strategy, make_strategy, register


def test_config_names_are_the_registry():
    assert isinstance(config_module.STRATEGIES, frozenset)
    assert config_module.STRATEGIES == frozenset(REGISTRY)
    assert len(REGISTRY) >= 8


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_each_class_declares_itself(name):
    cls = REGISTRY[name]
    assert issubclass(cls, Strategy)
    assert cls.name == name
    assert isinstance(cls.needs_session, bool)
    assert isinstance(cls.needs_tokens, bool)
    # Declared in the class body itself or inherited from Strategy, never
    # a per-instance value that a pick could change.
    for attr in ("name", "needs_session", "needs_tokens"):
        assert attr not in getattr(cls, "__slots__", ())
    assert type(make_strategy(name, [], random.Random(1))) is cls


def test_group_needs_come_from_the_class():
    for name, cls in REGISTRY.items():
        cfg = parse_config(f"""
providers: {{m: {{type: mock}}}}
models: {{x: {{strategy: {name}, deployments: [{{provider: m, model: a}}]}}}}
""")
        group = Router(cfg, StateRegistry(lambda: 0.0)).group("x")
        assert group is not None
        assert group.needs_session is cls.needs_session, name
        assert group.needs_tokens is cls.needs_tokens, name


def test_register_rejects_a_taken_or_empty_name():
    class Again(Strategy):
        name = "weighted"

    class Nameless(Strategy):
        pass

    for cls in (Again, Nameless):
        with pytest.raises(ValueError):
            register(cls)
    assert REGISTRY["weighted"] is not Again


def test_unknown_name_is_a_config_error_listing_the_registry():
    with pytest.raises(ConfigError) as e:
        parse_config("""
providers: {m: {type: mock}}
models: {x: {strategy: nope, deployments: [{provider: m, model: a}]}}
""")
    text = str(e.value)
    assert "models.x.strategy" in text
    for name in REGISTRY:
        assert name in text


@pytest.mark.parametrize("name", sorted(REGISTRY))
async def test_every_registered_strategy_routes_through_the_proxy(start_proxy, name):
    """Each registered name is accepted by the config and serves through the
    real proxy; the session-keyed ones keep one session on one deployment
    (their ``needs_session`` declaration is what makes the plan read the
    header)."""
    proxy = await start_proxy(f"""
        providers:
          pa: {{type: mock, reply: "from-a"}}
          pb: {{type: mock, reply: "from-b"}}
        models:
          x:
            strategy: {name}
            deployments:
              - {{provider: pa, model: a, price: {{input_per_mtok: 1, output_per_mtok: 1}}}}
              - {{provider: pb, model: b, price: {{input_per_mtok: 1, output_per_mtok: 1}}}}
        """)
    replies = []
    async with aiohttp.ClientSession() as http:
        for _ in range(6):
            async with http.post(proxy.v1 + "/chat/completions",
                                 headers={"x-session-id": "s-1"},
                                 json={"model": "x", "messages": [{"role": "user", "content": "hi"}]}) as r:
                assert r.status == 200, await r.text()
                replies.append((await r.json())["choices"][0]["message"]["content"])
    assert set(replies) <= {"from-a", "from-b"}
    if REGISTRY[name].needs_session:
        assert len(set(replies)) == 1, replies
