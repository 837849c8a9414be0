# syntax=docker/dockerfile:1
# vidx worker image. Every install step goes through scripts/install.sh, the
# same script .ci/run uses, so CI exercises what this image runs.
#
#   docker build -t vidx .                                    # CPU torch
#   docker build -t vidx:cuda --build-arg TORCH_VARIANT=cu128 .   # CUDA torch
#   docker build -t vidx --build-arg CLIP_WEIGHTS=ViT-B-32.pt .   # bake weights/ViT-B-32.pt
#   docker build --target test -t vidx-test .                 # + test extras (compose)
#
# Stages: build (venv with torch and vidx), weights (picks the one file to
# bake, so nothing else in weights/ reaches the image), base (slim: ffmpeg +
# venv + source), test (base + test extras + tests/) and runtime (base,
# non-root, `vidx worker`; the last stage, so the default target).

ARG PYTHON_VERSION=3.11

# ---------------------------------------------------------------- build ----
FROM python:${PYTHON_VERSION}-slim-bookworm AS build
# cpu: CPU-only wheels. For CUDA use the variant tag of the PyTorch wheel
# index, e.g. cu128; the CUDA runtime comes inside the wheels, so the base
# image stays the same (the host needs the NVIDIA driver + container toolkit).
ARG TORCH_VARIANT=cpu
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/${TORCH_VARIANT}
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIDX_VENV=/opt/venv \
    VIDX_SKIP_APT=1 \
    VIDX_EXTRAS="" \
    VIDX_EDITABLE=1
WORKDIR /opt/vidx
# Dependencies first (torch is the big, rarely changing layer) ...
COPY scripts/install.sh scripts/install.sh
COPY pyproject.toml README.md ./
COPY pipeline/__init__.py pipeline/__init__.py
COPY worker/__init__.py worker/__init__.py
RUN TORCH_INDEX_URL="${TORCH_INDEX_URL}" scripts/install.sh
# ... then the code. Installed editable at the fixed path /opt/vidx, which the
# runtime stage keeps, so infra/migrations sits next to the packages exactly
# as in a checkout.
COPY pipeline/ pipeline/
COPY worker/ worker/
COPY infra/ infra/
COPY scripts/ scripts/
RUN scripts/install.sh

# -------------------------------------------------------------- weights ----
FROM python:${PYTHON_VERSION}-slim-bookworm AS weights
# File name (no directories) of a weights file in the build context's
# weights/ folder; empty: nothing baked, CLIP_PRETRAINED downloads on first use.
# A <CLIP_MODEL_NAME>.json beside it (an open_clip model config, for an
# architecture open_clip does not ship) is baked with it.
ARG CLIP_WEIGHTS=""
ARG CLIP_MODEL_NAME=ViT-B-32
COPY weights/ /context-weights/
RUN mkdir -p /opt/vidx/weights \
    && if [ -n "${CLIP_WEIGHTS}" ]; then \
         case "${CLIP_WEIGHTS}" in */*) echo "CLIP_WEIGHTS must be a file name inside weights/" >&2; exit 1;; esac; \
         test -f "/context-weights/${CLIP_WEIGHTS}" || { echo "weights/${CLIP_WEIGHTS} is not in the build context" >&2; exit 1; }; \
         cp "/context-weights/${CLIP_WEIGHTS}" /opt/vidx/weights/; \
         if [ -f "/context-weights/${CLIP_MODEL_NAME}.json" ]; then cp "/context-weights/${CLIP_MODEL_NAME}.json" /opt/vidx/weights/; fi; \
       fi

# ----------------------------------------------------------------- base ----
# What the runtime and test images share.
FROM python:${PYTHON_VERSION}-slim-bookworm AS base
ARG CLIP_WEIGHTS=""
ARG CLIP_MODEL_NAME=ViT-B-32
ARG VIDX_UID=10001
# ffmpeg, and util-linux for prlimit (essential in Debian: already there): the worker
# talks to Redis and PostgreSQL over the network.
COPY scripts/install.sh /tmp/install.sh
RUN VIDX_SKIP_PYTHON=1 VIDX_APT_PACKAGES="ffmpeg util-linux" /tmp/install.sh \
    && rm -rf /var/lib/apt/lists/* /tmp/install.sh \
    && groupadd --system --gid "${VIDX_UID}" vidx \
    && useradd --system --uid "${VIDX_UID}" --gid vidx --create-home --home-dir /home/vidx vidx \
    && mkdir -p /var/lib/vidx \
    && chown vidx:vidx /var/lib/vidx
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/vidx /opt/vidx
COPY --from=weights /opt/vidx/weights /opt/vidx/weights
# CLIP_CHECKPOINT is the baked file when CLIP_WEIGHTS was given, else empty
# (empty counts as unset: CLIP_PRETRAINED is used).
ENV PATH=/opt/venv/bin:${PATH} \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    VIDX_DATA_DIR=/var/lib/vidx \
    CLIP_CACHE_DIR=/var/lib/vidx/clip_cache \
    CLIP_MODEL_NAME=${CLIP_MODEL_NAME} \
    CLIP_CHECKPOINT=${CLIP_WEIGHTS:+/opt/vidx/weights/}${CLIP_WEIGHTS}
WORKDIR /opt/vidx

# ----------------------------------------------------------------- test ----
# base plus the test extras, redis-server (for tests that start their own)
# and tests/: the test-runner of docker-compose.test.yml (--target test).
FROM base AS test
ARG VIDX_UID=10001
COPY tests/ tests/
COPY bench/ bench/
# tests/test_deploy.py checks these deploy files too.
COPY Dockerfile .dockerignore docker-compose.test.yml railway.json railway.web.json ./
COPY weights/README.md weights/README.md
RUN PIP_NO_CACHE_DIR=1 VIDX_VENV=/opt/venv VIDX_EXTRAS=test scripts/install.sh \
    && rm -rf /var/lib/apt/lists/* \
    && chown -R vidx:vidx /opt/vidx/tests
USER ${VIDX_UID}:${VIDX_UID}
CMD ["pytest", "-q", "-p", "no:cacheprovider"]

# -------------------------------------------------------------- runtime ----
# The worker image, and the default target (last stage): what Railway and a
# plain `docker build .` produce.
FROM base AS runtime
ARG VIDX_UID=10001
ENV VIDX_LOG_FORMAT=json
# Numeric, so Kubernetes' runAsNonRoot and friends can check it.
USER ${VIDX_UID}:${VIDX_UID}
# The same image runs either `vidx worker` (the default) or the HTTP API and web
# page: `vidx serve --host 0.0.0.0` (port 8000, or $PORT). Uploads and frames live
# in VIDX_DATA_DIR / VIDX_SIDECAR_DIR: API and workers must share them.
EXPOSE 8000
# `vidx health` checks the database, the broker and that the CLIP model loads
# (a fresh process importing torch each time), hence the unhurried interval.
# A `vidx serve` container is better probed over HTTP: GET /v1/live (compose, Railway).
HEALTHCHECK --interval=2m --timeout=90s --start-period=2m --retries=3 CMD ["vidx", "health"]
CMD ["vidx", "worker"]
