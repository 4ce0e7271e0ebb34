# Stand-in for heartexlabs/label-studio:1.23.2 where no image registry is reachable (built by
# scripts/test-compose.sh from a context holding this file and, optionally, ca/*.crt): PyPI's
# label-studio in its own venv, on the python stand-in, laid out like the official image (data in
# /label-studio/data, user 1001, port 8080, `python3` on PATH for the healthcheck).
ARG PYTHON_IMAGE=local/python:3.11-slim-bookworm
FROM ${PYTHON_IMAGE}
ARG LABEL_STUDIO_VERSION=1.23.2
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    LABEL_STUDIO_BASE_DATA_DIR=/label-studio/data \
    SENTRY_DSN= \
    FRONTEND_SENTRY_DSN=
COPY ca/ /tmp/ca/
RUN if ls /tmp/ca/*.crt >/dev/null 2>&1; then cat /tmp/ca/*.crt > /tmp/ca.pem; export PIP_CERT=/tmp/ca.pem; fi \
 && python3 -m venv /opt/label-studio \
 && /opt/label-studio/bin/pip install --no-cache-dir "label-studio==$LABEL_STUDIO_VERSION" \
 && rm -rf /tmp/ca /tmp/ca.pem \
 && useradd --uid 1001 --create-home --home-dir /label-studio labelstudio \
 && mkdir -p /label-studio/data && chown -R 1001:1001 /label-studio
ENV PATH=/opt/label-studio/bin:$PATH
WORKDIR /label-studio
USER 1001
EXPOSE 8080
CMD ["label-studio", "start", "--no-browser", "--internal-host", "0.0.0.0", "--port", "8080"]
