# One image for every tier of prefloop; the command picks the tier:
#   prefloop serve            the Label Studio ML backend (gunicorn, port 9090)
#   prefloop worker           the RQ worker (generation, reward model, PPO; wants the GPU)
#   prefloop download-model   puts BASE_MODEL into the model cache (HF_HOME), once
#   prefloop init             first start: creates the Label Studio project and connects the backend
#
# Stages: `build` installs torch and the locked dependencies (constraints.txt) into the venv
# /opt/venv; `app` copies that venv and adds the code. Layers go from slowest- to fastest-changing,
# so a code change rebuilds only the last ones: 1. torch (several GB for the CUDA build), 2. the
# dependencies, 3. the code.
#
# Build arguments (no secrets are needed or accepted at build time):
#   PYTHON_IMAGE   the base image (default python:3.11-slim-bookworm; point it at a registry
#                  mirror, or at a local image of the same Python)
#   TORCH_VARIANT  cuda (default: PyPI's Linux wheel, which bundles the CUDA runtime; the host needs
#                  only the NVIDIA driver and the container toolkit), cpu (a small image for laptops),
#                  or a PyTorch index name such as cu128
#   TORCH_VERSION  the torch release (keep it equal to torch's pin in constraints.txt)
#
# Restricted networks: files put in scripts/docker/local/ (ignored by git) reach the build stage
# only, never the image: a torch wheel (torch-<TORCH_VERSION>-*.whl) is installed instead of
# downloading one, and *.crt files (PEM CA bundles, e.g. a TLS-intercepting proxy's) are trusted by
# pip on top of its own CA list. See scripts/docker/local/README.md.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# pip's settings for the build stages: the base image plus scripts/docker/local/ (never in an image).
FROM ${PYTHON_IMAGE} AS pip
ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY scripts/docker/local/ /tmp/local/
RUN if ls /tmp/local/*.crt >/dev/null 2>&1; then \
      cat "$(python -c 'import pip._vendor.certifi as c; print(c.where())')" /tmp/local/*.crt > /etc/pip-ca.pem \
      && printf '[global]\ncert = /etc/pip-ca.pem\n' > /etc/pip.conf; \
    fi


FROM pip AS build

ARG TORCH_VARIANT=cuda
ARG TORCH_VERSION=2.13.0
ENV PATH=/opt/venv/bin:$PATH

# 1. torch, alone in its layer: the local wheel if there is one, else the index TORCH_VARIANT names.
#    (DL3013: "$torch" is the pinned torch==TORCH_VERSION or a wheel file.)
# hadolint ignore=DL3013
RUN set -eu; \
    python -m venv /opt/venv; \
    wheel=$(find /tmp/local -maxdepth 1 -name "torch-$TORCH_VERSION*.whl" -print -quit); \
    if [ -n "$wheel" ]; then \
      torch="$wheel"; \
    else \
      torch="torch==$TORCH_VERSION"; \
      case "$TORCH_VARIANT" in \
        cuda) ;; \
        cpu|cu[0-9]*) export PIP_INDEX_URL="https://download.pytorch.org/whl/$TORCH_VARIANT" ;; \
        *) echo "TORCH_VARIANT must be cuda, cpu or cuXYZ, got '$TORCH_VARIANT'" >&2; exit 2 ;; \
      esac; \
    fi; \
    pip install --no-cache-dir "$torch"

# 2. The dependencies, read from pyproject.toml (one list to maintain), at the versions of the lock;
#    setuptools too, so the app stage installs the code without reaching an index.
WORKDIR /src
COPY pyproject.toml constraints.txt ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
      > /tmp/requirements.txt \
 && pip install --no-cache-dir -c constraints.txt -r /tmp/requirements.txt setuptools \
 && pip check


FROM ${PYTHON_IMAGE} AS app

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

WORKDIR /app
COPY --from=build /opt/venv /opt/venv

# 3. The code (every package pyproject.toml's packages.find lists), installed in place (editable),
#    offline: setuptools is in the venv already.
COPY pyproject.toml README.md ./
COPY label_config ./label_config
COPY prefloop ./prefloop
COPY cli ./cli
COPY backend ./backend
COPY worker ./worker
RUN pip install --no-cache-dir --no-deps --no-build-isolation --no-index -e . \
 && prefloop --help >/dev/null \
 && useradd --create-home --uid 10001 --user-group prefloop \
 && mkdir -p /data/models /data/hf \
 && chown -R prefloop:prefloop /data

# Named volumes mounted at /data/models and /data/hf start out owned by the prefloop user.
# HF_HUB_OFFLINE: the running services never reach the model hub; only `prefloop download-model`
# (run with HF_HUB_OFFLINE=0) does. (DL3064 mistakes TOKENIZERS_PARALLELISM for a secret.)
# hadolint ignore=DL3064
ENV MODEL_DIR=/data/models \
    HF_HOME=/data/hf \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    MPLCONFIGDIR=/tmp/matplotlib \
    TOKENIZERS_PARALLELISM=false

USER 10001
EXPOSE 9090
CMD ["prefloop", "serve"]


# The optional `dashboard` compose profile: rq-dashboard in its own small image, reading the same
# Redis with RQ's JSON serializer (the one prefloop uses). rq-dashboard 0.9.0 imports six without
# declaring it. Last in this file: the legacy builder builds every stage before its target.
FROM pip AS rq-dashboard-build
RUN python -m venv /opt/rq-dashboard \
 && /opt/rq-dashboard/bin/pip install --no-cache-dir "rq-dashboard==0.9.0" "six==1.17.0"

FROM ${PYTHON_IMAGE} AS rq-dashboard
COPY --from=rq-dashboard-build /opt/rq-dashboard /opt/rq-dashboard
ENV PATH=/opt/rq-dashboard/bin:$PATH \
    PYTHONUNBUFFERED=1
USER 65534
EXPOSE 9181
ENTRYPOINT ["rq-dashboard", "--json", "--bind", "0.0.0.0", "--port", "9181"]
