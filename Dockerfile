# modelci serving image: the app in app/ serving the model directory in artifact/.
# Build context (assembled by `modelci build`): Dockerfile, app/, artifact/.
# Works with the legacy builder and BuildKit alike (no RUN --mount), from any Debian-based Python
# image that has python3 with venv+pip (python:3.12-slim on GitLab runners; locally
# --build-arg BASE_IMAGE=local/python:3.11-bookworm).
ARG BASE_IMAGE=python:3.12-slim

# ---- build stage: a self-contained venv from the pinned requirements (cached until they change)
FROM ${BASE_IMAGE} AS build
ARG PIP_INDEX_URL
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
RUN python3 -m venv /opt/venv
COPY app/requirements.txt /tmp/requirements.txt
RUN /opt/venv/bin/pip install --no-cache-dir --only-binary=:all: -r /tmp/requirements.txt \
 && /opt/venv/bin/python -c "import sklearn, numpy, scipy, pandas, joblib, uvicorn, uvloop, httptools, orjson, prometheus_client, grpc, google.protobuf" \
 && /opt/venv/bin/pip uninstall -y -q pip setuptools wheel \
 && find /opt/venv -depth -type d \( -name tests -o -name testing \) -path '*/site-packages/*' \
      -not -path '*/numpy/testing' -exec rm -rf {} + \
 && find /opt/venv -type f \( -name '*.pyx' -o -name '*.pxd' -o -name '*.pxi' \) -delete \
 && rm -f /tmp/requirements.txt

# ---- final stage: base + venv + app, then the model LAST (a model-only change = one small layer)
FROM ${BASE_IMAGE}
RUN (getent group 10001 >/dev/null || groupadd --gid 10001 modelci) \
 && (getent passwd 10001 >/dev/null || useradd --uid 10001 --gid 10001 --no-create-home \
      --home-dir /app --shell /usr/sbin/nologin modelci)
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOST=0.0.0.0 \
    PORT=8080 \
    MODELCI_MODEL_DIR=/app/artifact
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY app/ /app/app/
USER 10001:10001
EXPOSE 8080 8081
HEALTHCHECK --interval=5s --timeout=3s --start-period=60s --retries=3 \
  CMD ["python3", "-c", "import os,urllib.request as u; u.urlopen('http://127.0.0.1:%s/v2/health/ready' % os.environ.get('PORT', '8080'), timeout=2)"]
CMD ["python3", "-m", "app"]
# The model, owned by the app user (the model directory may be private to its writer). Its sha256 is
# verified against model.json at start; an altered artifact never becomes ready.
COPY --chown=10001:10001 artifact/ /app/artifact/

# Metadata only (no layers): lineage labels and the baked model version.
ARG MODEL_VERSION=""
ARG MODEL_SHA256=""
ARG DATA_SHA256=""
ARG MODEL_METRICS="{}"
ARG VCS_REF=""
ARG SOURCE_URL=""
ARG CREATED=""
LABEL org.opencontainers.image.title="modelci serving" \
      org.opencontainers.image.revision="${VCS_REF}" \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.version="${MODEL_VERSION}" \
      io.modelci.model.version="${MODEL_VERSION}" \
      io.modelci.model.sha256="${MODEL_SHA256}" \
      io.modelci.data.sha256="${DATA_SHA256}" \
      io.modelci.model.metrics="${MODEL_METRICS}"
ENV MODELCI_MODEL_VERSION=${MODEL_VERSION}
