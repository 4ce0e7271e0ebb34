# Stand-in for python:3.11-slim-bookworm where no image registry is reachable (built by
# scripts/test-compose.sh): Debian bookworm's own Python 3.11 in a venv at /opt/python, first on
# PATH as `python`, `python3` and `pip`, with the CA certificates the official image has.
ARG DEBIAN_IMAGE=local/debian:bookworm
FROM ${DEBIAN_IMAGE}
ENV LANG=C.UTF-8
# hadolint ignore=DL3008
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /opt/python
ENV PATH=/opt/python/bin:$PATH
CMD ["python3"]
