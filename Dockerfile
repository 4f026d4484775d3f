# Keel container image: `docker build -t keel .` then
# `docker run -p 8080:8080 -v keel-data:/data keel`.
# Two stages so the final image carries the installed venv but no pip cache,
# build tools or requirement files.

# --- builder: resolve and install the pinned runtime dependencies ----------
FROM python:3.11-slim AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

COPY requirements.txt /tmp/requirements.txt
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir -r /tmp/requirements.txt

# --- runtime ----------------------------------------------------------------
FROM python:3.11-slim

LABEL org.opencontainers.image.title="keel" \
      org.opencontainers.image.description="One aiohttp process with pluggable storage, cache, limits, breakers, jobs and WebSockets." \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11-slim"

# A fixed uid lets volume permissions be prepared on the host or in k8s
# (securityContext.runAsUser: 10001); /data is created here so the named
# volume inherits keel's ownership on first mount.
RUN groupadd --system --gid 10001 keel \
    && useradd --system --no-log-init --uid 10001 --gid keel \
       --home-dir /app --shell /usr/sbin/nologin keel \
    && mkdir /data \
    && chown keel:keel /data

COPY --from=builder /opt/venv /opt/venv

ENV PATH="/opt/venv/bin:$PATH" \
    PYTHONUNBUFFERED=1 \
    KEEL_SERVER__HOST=0.0.0.0 \
    KEEL_SERVER__DATA_DIR=/data

WORKDIR /app
# The code stays owned by root: the service can read it but not rewrite it.
COPY run.py config.toml ./
COPY app/ ./app/
COPY static/ ./static/
COPY templates/ ./templates/
COPY migrations/ ./migrations/

VOLUME ["/data"]
# Numeric (= keel:keel) so Kubernetes' runAsNonRoot can verify it without
# reading /etc/passwd in the image.
USER 10001:10001
EXPOSE 8080

# slim has no curl; urlopen raises (exit 1) on a refused connection or any
# non-2xx status.
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]

# SIGTERM starts Keel's drain sequence (readyz 503, finish in-flight, exit 0).
STOPSIGNAL SIGTERM
CMD ["python", "run.py"]
