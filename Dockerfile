# One image for every tier of prefloop; the command picks the tier:
#   prefloop serve            the Label Studio ML backend (gunicorn, port 9090)
#   prefloop worker           the RQ worker (generation, reward model, PPO; wants the GPU)
#   prefloop download-model   puts BASE_MODEL into the model cache (HF_HOME), once
#   prefloop init             first start: creates the Label Studio project and connects the backend
#
# Layers go from slowest- to fastest-changing, so a code change rebuilds only the last ones:
#   1. torch (several GB for the CUDA build), 2. the dependencies in pyproject.toml, 3. the code.
#
# Build arguments (no secrets are needed or accepted at build time):
#   TORCH_VARIANT  cuda (default: PyPI's Linux wheel, which bundles the CUDA runtime; the host needs
#                  only the NVIDIA driver and the container toolkit), cpu (a small image for laptops),
#                  or a PyTorch index name such as cu128
#   TORCH_VERSION  the torch release to pin

FROM python:3.11-slim-bookworm AS rq-dashboard
# The optional `dashboard` compose profile: rq-dashboard in its own small image, reading the
# same Redis with RQ's JSON serializer (the one prefloop uses). rq-dashboard 0.9.0 imports six
# without declaring it.
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1
RUN pip install --no-cache-dir "rq-dashboard==0.9.0" "six==1.17.0"
USER 65534
EXPOSE 9181
CMD ["rq-dashboard", "--json", "--bind", "0.0.0.0", "--port", "9181"]


FROM python:3.11-slim-bookworm AS app

ARG TORCH_VARIANT=cuda
ARG TORCH_VERSION=2.13.0

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# 1. torch, alone in its layer.
RUN case "$TORCH_VARIANT" in \
      cuda) ;; \
      cpu|cu[0-9]*) export PIP_INDEX_URL="https://download.pytorch.org/whl/$TORCH_VARIANT" ;; \
      *) echo "TORCH_VARIANT must be cuda, cpu or cuXYZ, got '$TORCH_VARIANT'" >&2; exit 2 ;; \
    esac \
 && pip install --no-cache-dir "torch==$TORCH_VERSION"

# 2. The dependencies, read from pyproject.toml (one list to maintain); torch is already there.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
      > /tmp/requirements.txt \
 && pip install --no-cache-dir -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt

# 3. The code, installed in place (editable), so /app/label_config stays where prefloop reads it.
COPY README.md ./
COPY label_config ./label_config
COPY prefloop ./prefloop
COPY backend ./backend
COPY worker ./worker
RUN pip install --no-cache-dir --no-deps -e . \
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
