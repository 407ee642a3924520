# syntax=docker/dockerfile:1
# The bot's image: `agentbot serve` as uid 10001. Build from the repository root:
#   docker build -t agentbot .
# The base is pinned by digest; Dependabot (docker ecosystem) proposes updates.
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm@sha256:86adf8dbadc3d6e82ee5dd2c74bec2e1c2467cdad47886280501df722372d2e1

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# A virtualenv at a fixed path is the one thing the runtime stage copies.
RUN python -m venv /opt/agentbot
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY sandbox ./sandbox
RUN /opt/agentbot/bin/pip install --no-cache-dir . \
    && /opt/agentbot/bin/python -m compileall -q /opt/agentbot/lib
# The setup page (serve with no App configured) reads the manifest from the venv's prefix.
COPY app-manifest.yml /opt/agentbot/app-manifest.yml

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="agentbot" \
      org.opencontainers.image.description="A self-hosted GitHub App that hands issues to coding agents in sandboxed Kubernetes Jobs" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/agentbot/agentbot"
RUN groupadd --system --gid 10001 agentbot \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/agentbot \
       --no-create-home --shell /usr/sbin/nologin agentbot \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/agentbot
COPY --from=build /opt/agentbot /opt/agentbot
# Bytecode was compiled at build time: the root filesystem is read-only at run time.
ENV PATH=/opt/agentbot/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    AGENTBOT_DATABASE_URL=sqlite+aiosqlite:////var/lib/agentbot/agentbot.db
WORKDIR /var/lib/agentbot
USER 10001:10001
# 8080: /webhook, /healthz, /readyz. 8081: the internal API for sandboxes and /metrics.
EXPOSE 8080 8081
ENTRYPOINT ["agentbot"]
CMD ["serve"]
