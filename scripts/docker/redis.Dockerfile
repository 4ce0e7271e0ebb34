# Stand-in for redis:7.4-alpine where no image registry is reachable (built by
# scripts/test-compose.sh): Debian bookworm's redis-server, run as the redis user in /data. Like the
# official image, a bare `redis-server ...` runs with protected mode off (the container's network
# is the boundary; the official image patches that default in).
ARG DEBIAN_IMAGE=local/debian:bookworm
FROM ${DEBIAN_IMAGE}
# hadolint ignore=DL3008
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /data && chown redis:redis /data \
 && printf '#!/bin/sh\nif [ "$1" = redis-server ]; then shift; exec redis-server "$@" --protected-mode no; fi\nexec "$@"\n' \
      > /usr/local/bin/redis-entrypoint \
 && chmod 755 /usr/local/bin/redis-entrypoint
WORKDIR /data
USER redis
EXPOSE 6379
ENTRYPOINT ["/usr/local/bin/redis-entrypoint"]
CMD ["redis-server"]
