# The hybrid-nas image: one for every service of docker-compose.yml (mlflow, ray-head, ray-gpu-worker,
# scheduler, dashboard). torch goes in first, from the build arguments, so that the project installs
# against that build: a CUDA one (the default index, for GPU workers) or a CPU one (TORCH_INDEX_URL).
FROM python:3.11-slim

ARG TORCH=torch==2.13.0
ARG TORCH_INDEX_URL=

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    NAS_HOME=/var/lib/nas

# Triton compiles its launchers with the system C compiler at run time
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*

RUN pip install ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} "$TORCH"

WORKDIR /app
COPY pyproject.toml README.md ./
COPY search_spaces ./search_spaces
COPY kernels ./kernels
COPY workers ./workers
COPY nas ./nas
COPY dashboard ./dashboard
RUN pip install -e '.[all]'

RUN useradd --create-home --uid 1000 nas && mkdir -p /var/lib/nas /mlartifacts && chown nas /var/lib/nas /mlartifacts
USER nas
