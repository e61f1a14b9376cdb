# The DeepCoder image: CPU by default; `--build-arg VARIANT=gpu` adds requirements-gpu.txt (Unsloth,
# bitsandbytes) on a CUDA base image for GPU workers.
#   docker build -t deepcoder:cpu .
#   docker build -t deepcoder:gpu --build-arg VARIANT=gpu --build-arg BASE_IMAGE=nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04 .
#   docker run --rm -p 8000:8000 -e DEEPCODER_API_KEYS=change-me deepcoder:cpu
# The sandbox needs user namespaces for bubblewrap: run with `--security-opt seccomp=unconfined`
# (or a seccomp profile allowing clone/unshare of namespaces) or the python tool reports it unavailable.
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}
ARG VARIANT=cpu

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    DEEPCODER_PROFILE=demo XDG_CACHE_HOME=/var/cache

RUN apt-get update && apt-get install -y --no-install-recommends bubblewrap ca-certificates \
    && if ! command -v python3.11 >/dev/null; then apt-get install -y --no-install-recommends python3.11 python3.11-venv python3-pip; fi \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY requirements.txt requirements-nodeps.txt requirements-gpu.txt ./
RUN python3 -m pip install -r requirements.txt \
    && python3 -m pip install --no-deps -r requirements-nodeps.txt \
    && if [ "$VARIANT" = "gpu" ]; then python3 -m pip install -r requirements-gpu.txt; fi

COPY pyproject.toml README.md serve_config.yaml ./
COPY deepcoder ./deepcoder
COPY jobs ./jobs
RUN python3 -m pip install --no-deps -e . \
    && deepcoder retrieve "warm the index" -k 1 >/dev/null  # build the BM25 index into the image

# Serve's proxy must listen on all interfaces inside the container.
RUN sed -i 's/host: 127.0.0.1 /host: 0.0.0.0 /' serve_config.yaml \
    && useradd --create-home --uid 1000 deepcoder && chown -R deepcoder /var/cache
USER deepcoder
EXPOSE 8000 8265
CMD ["serve", "run", "serve_config.yaml"]
