# syntax=docker/dockerfile:1
#
# llmproxy container image: the sidecar next to an app container, or a shared
# instance. Build:   docker build -t llmproxy:0.1.0 .
#
# Invariants of the final image:
# - no compiler, no build tool, no wheel cache: only the installed wheels;
# - runs as numeric UID/GID 10001, so Kubernetes can verify runAsNonRoot;
# - writes nothing at run time (bytecode is compiled at build time), so it
#   runs with readOnlyRootFilesystem: true and no writable volume;
# - `llmproxy serve` is the ENTRYPOINT and the listen address is CMD, so
#   `docker run IMAGE --port 9000` or a pod's `args:` replace only the flags.

ARG PYTHON_IMAGE=python:3.12-slim-bookworm

# --- builder: build the llmproxy wheel and collect the wheels it depends on ---
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY llmproxy ./llmproxy
# Dependency versions come from pyproject.toml; the final stage installs
# exactly the wheels resolved here.
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# --- runtime: install the wheels only ---
FROM ${PYTHON_IMAGE}

LABEL org.opencontainers.image.title="llmproxy" \
      org.opencontainers.image.description="OpenAI-compatible sidecar reverse proxy for LLM APIs"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PATH=/opt/llmproxy/bin:$PATH \
    LLMPROXY_CONFIG=/etc/llmproxy/llmproxy.yaml

# The wheels are bind-mounted from the builder, so they never land in a layer;
# --no-index keeps this stage off the network: it installs exactly what the
# builder resolved.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    python -m venv /opt/llmproxy \
    && /opt/llmproxy/bin/pip install --no-cache-dir --no-index --find-links=/wheels /wheels/llmproxy-*.whl \
    && groupadd --system --gid 10001 llmproxy \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin llmproxy

# Default config; in Kubernetes a ConfigMap is mounted over /etc/llmproxy.
COPY --chown=root:root configs/llmproxy.yaml /etc/llmproxy/llmproxy.yaml

USER 10001:10001
EXPOSE 8080
STOPSIGNAL SIGTERM
ENTRYPOINT ["llmproxy", "serve"]
CMD ["--host", "0.0.0.0", "--port", "8080"]
