"""Routing order for the strategies in this module's scope."""

from __future__ import annotations

from collections import Counter

from llmproxy.config import parse_config
from llmproxy.router import Router, StateRegistry


def router(strategy: str, weights: list[float]) -> Router:
    deps = "\n".join(f"      - {{provider: m, model: d{i}, weight: {w}}}" for i, w in enumerate(weights))
    config = parse_config(f"""
providers: {{m: {{type: mock}}}}
models:
  x:
    strategy: {strategy}
    deployments:
{deps}
""")
    return Router(config, StateRegistry())


def picks(r: Router, n: int) -> list[str]:
    group = r.group("x")
    assert group is not None
    return [next(group.attempts()).config.model for _ in range(n)]


def test_smooth_weighted_is_smooth_and_exact():
    r = router("weighted", [5, 1, 1])
    seq = picks(r, 7)
    assert seq == ["d0", "d0", "d1", "d0", "d2", "d0", "d0"]
    assert Counter(picks(r, 700)) == {"d0": 500, "d1": 100, "d2": 100}


def test_equal_weights_are_round_robin():
    assert picks(router("weighted", [1, 1, 1]), 6) == ["d0", "d1", "d2", "d0", "d1", "d2"]
    assert picks(router("round_robin", [9, 1]), 4) == ["d0", "d1", "d0", "d1"]


def test_attempts_try_each_deployment_once():
    r = router("weighted", [3, 1, 1])
    group = r.group("x")
    assert group is not None
    order = [s.config.model for s in group.attempts()]
    assert sorted(order) == ["d0", "d1", "d2"]


def test_state_survives_a_rebind_with_the_same_id():
    registry = StateRegistry()
    config = parse_config("""
providers: {m: {type: mock}}
models: {x: {deployments: [{provider: m, model: a}]}}
""")
    first = Router(config, registry).states["m/a"]
    first.acquire()
    again = Router(config, registry).states["m/a"]
    assert again is first and again.in_flight == 1
