# One image for every process of scalable-api:
#   docker build -t scalable-api .
#   docker run scalable-api gateway|balancer|apiserver|migrate|seed   (default: gateway)
# The image defaults to ENVIRONMENT=production, so it refuses to start on development secrets: pass real
# INTERNAL_SECRET / JWT_SECRET, or ENVIRONMENT=development (docker-compose.yml does the latter for you).
# Base images are pinned by tag; CI should pin them by digest as well (e.g. with Renovate).
# No `# syntax=` parser directive: BuildKit would pull that frontend image from a registry before building anything;
# the engine's built-in Dockerfile frontend builds this file offline (tests/compose builds it with no registry).

# --- 1. the admin dashboard (React + Vite) -> /frontend/dist ----------------------------------------------------
FROM node:20-bookworm-slim AS dashboard
WORKDIR /frontend
COPY frontend/ ./
RUN npm install --no-save --no-audit --no-fund && npm run build

# --- 2. the Python package, built as a wheel and installed into a self-contained venv ---------------------------
FROM python:3.11-slim-bookworm AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/venv
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY database ./database
COPY apiserver ./apiserver
COPY balancer ./balancer
COPY gateway ./gateway
COPY stack ./stack
# Without the `embedded` extra: containers always get real servers through DATABASE_URL/REDIS_URL.
RUN python -m pip wheel --no-deps --wheel-dir /wheels . \
    && /opt/venv/bin/pip install /wheels/*.whl

# --- 3. runtime: the venv, the dashboard, an unprivileged user; nothing is written outside /tmp ------------------
FROM python:3.11-slim-bookworm AS runtime
LABEL org.opencontainers.image.title="scalable-api" \
      org.opencontainers.image.description="gateway, balancer and API servers for a read-heavy public API" \
      org.opencontainers.image.licenses="MIT"
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin app
COPY --from=builder /opt/venv /opt/venv
COPY --from=dashboard /frontend/dist /app/frontend/dist
WORKDIR /app
# HOST=0.0.0.0: a container is reached through its network interface. PORT is what the HEALTHCHECK probes, so
# set PORT (not --port) when running another process: 3000 balancer, 3001 apiserver.
# WORKERS (default 1; auto = one per core of the container's CPU set, a --cpus quota is not counted) runs that many
# worker processes on PORT under one parent, which keeps its scratch directory in TMPDIR.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TMPDIR=/tmp \
    ENVIRONMENT=production \
    HOST=0.0.0.0 \
    PORT=8080 \
    DASHBOARD_DIR=/app/frontend/dist
USER 10001:10001
EXPOSE 8080 3000 3001
# Exec form: no shell needed. urlopen raises on a refused connection and on any 4xx/5xx, so the exit code is 1.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('PORT', '8080'), timeout=2)"]
ENTRYPOINT ["scalable-api"]
CMD ["gateway"]
