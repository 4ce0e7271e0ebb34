#!/usr/bin/env bash
# The Docker deployment, built and run for real (called by .ci/run; about 10 minutes on 2 cores).
#
# 1. Installs what it needs (scripts/docker/install-tools.sh) and starts a Docker daemon of its
#    own: its own data root, socket and pidfile under a temporary folder, its own bridge, published
#    ports on 127.0.0.1 only, and networks from a private address pool.
# 2. Builds stand-ins for the three images the stack starts from, since no image registry is
#    reachable here: a Debian bookworm root filesystem (debootstrap, cached) imported as an image,
#    Debian's Python 3.11 in a venv for python:3.11-slim-bookworm, Debian's redis-server for Redis,
#    and PyPI's label-studio for Label Studio (scripts/docker/*.Dockerfile). Then prefloop's image
#    with `docker compose build`, from a copy of the working tree, given the host's torch CPU
#    wheel and the CA bundle pip uses through scripts/docker/local/ (the README's way for
#    restricted networks).
# 3. Writes .env from .env.example as the README says (cpu profile, the stand-ins' names, the tiny
#    offline model, private host ports) and runs scripts/docker/compose_drill.py: stack up, tasks
#    imported and filled, annotations, a reward version, the upgrade drill, the worker stopped
#    mid-job.
# 4. Always (trap): saves the compose logs under test-output/compose/, removes the stack and its
#    volumes, stops the daemon, removes its folder, bridges and iptables rules, and prints one
#    closing line.
#
# Ports and names can be changed with COMPOSE_TEST_LS_PORT, COMPOSE_TEST_BACKEND_PORT,
# COMPOSE_TEST_BRIDGE(_ADDR), COMPOSE_TEST_POOL; COMPOSE_TEST_CACHE holds the root filesystem
# tarball (rebuilt when older than a week); DEBIAN_MIRROR the mirror debootstrap uses.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
T0=$SECONDS
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
LS_PORT=${COMPOSE_TEST_LS_PORT:-$(free_port)}          # both published on 127.0.0.1 only
BACKEND_PORT=${COMPOSE_TEST_BACKEND_PORT:-$(free_port)}
BRIDGE=${COMPOSE_TEST_BRIDGE:-pfct0}
BRIDGE_ADDR=${COMPOSE_TEST_BRIDGE_ADDR:-10.231.0.1/24}
POOL=${COMPOSE_TEST_POOL:-10.232.0.0/16}
CACHE=${COMPOSE_TEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/prefloop-compose-test}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
LOGS=${PREFLOOP_TEST_OUTPUT:-$REPO/test-output}/compose
PROJECT=prefloop-compose-test
TAG=prefloop-test   # repository prefix of the stand-in images

STEP="setup"
DAEMON_PID=""
WORK=""
declare -A TIMES=()
step() { STEP=$1; echo ">> [$((SECONDS - T0))s] $1"; }
timed() { local name=$1 t=$SECONDS; shift; "$@"; TIMES[$name]=$((SECONDS - t)); }
need_root() { [ "$(id -u)" = 0 ] || { echo "scripts/test-compose.sh runs a Docker daemon: run it as root" >&2; exit 2; }; }

cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  if [ -n "$DAEMON_PID" ] && kill -0 "$DAEMON_PID" 2>/dev/null; then
    if [ -f "$WORK/deploy/.env" ]; then
      (cd "$WORK/deploy" && docker compose -p "$PROJECT" ps -a && docker compose -p "$PROJECT" logs --no-color --timestamps) \
        > "$LOGS/compose.log" 2>&1
      (cd "$WORK/deploy" && docker compose -p "$PROJECT" down -v --remove-orphans -t 5) >/dev/null 2>&1
    fi
    docker ps -aq | xargs -r docker rm -f >/dev/null 2>&1
    kill "$DAEMON_PID" 2>/dev/null
    for _ in $(seq 60); do kill -0 "$DAEMON_PID" 2>/dev/null || break; sleep 0.5; done
    kill -9 "$DAEMON_PID" 2>/dev/null
  fi
  if [ -n "$WORK" ]; then
    # a containerd the daemon started, if it outlived the daemon
    local cpid; cpid=$(cat "$WORK/x/containerd/containerd.pid" 2>/dev/null)
    [ -n "$cpid" ] && kill "$cpid" 2>/dev/null
    awk -v w="$WORK" 'index($2, w) == 1 {print $2}' /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null
    rm -rf "$WORK"
  fi
  if [ -n "${BRIDGES_BEFORE+set}" ]; then   # our bridge, and the compose networks' bridges the daemon left
    ip link del "$BRIDGE" 2>/dev/null
    for br in $(ip -o link show type bridge | awk -F': ' '{print $2}' | sed 's/@.*//'); do
      [[ $br == br-* && " $BRIDGES_BEFORE " != *" $br "* ]] && ip link del "$br"
    done
  fi
  if [ -n "${FORWARD_POLICY:-}" ] && ! pgrep -x dockerd >/dev/null; then
    # What the daemon added: its chains, the rules that jump to them or name its bridges, the
    # FORWARD policy it set to DROP, and IP forwarding.
    for table in filter nat; do
      iptables-save -t "$table" | grep -v -e DOCKER -e "$BRIDGE" -e ' br-' -e "${POOL%%.0.0/*}\." \
        | sed "s/^:FORWARD DROP/:FORWARD $FORWARD_POLICY/" | iptables-restore -T "$table"
    done
    [ -n "${IP_FORWARD:-}" ] && sysctl -qw net.ipv4.ip_forward="$IP_FORWARD"
  fi
  local took=$((SECONDS - T0))
  if [ "$rc" = 0 ]; then
    echo "compose test: PASSED in ${took}s: ${SUMMARY:-}"
  else
    echo "compose test: FAILED at '$STEP' after ${took}s (exit $rc; logs in $LOGS)"
  fi
  exit "$rc"
}

need_root
mkdir -p "$LOGS" "$CACHE"
rm -f "$LOGS"/*.log "$LOGS"/summary.json
trap cleanup EXIT
trap 'exit 130' INT TERM

step "install tools"
bash scripts/docker/install-tools.sh
export DOCKER_CONFIG
WORK=$(mktemp -d /tmp/pfct.XXXXXX)
DOCKER_CONFIG=$WORK/config
mkdir -p "$DOCKER_CONFIG/cli-plugins" "$WORK/empty" "$WORK/ctx-ls/ca" "$WORK/deploy"
ln -s "$REPO/.venv-compose/bin/docker-compose" "$DOCKER_CONFIG/cli-plugins/docker-compose"
export DOCKER_HOST=unix://$WORK/docker.sock DOCKER_BUILDKIT=0 COMPOSE_PROJECT_NAME=$PROJECT
docker() { /usr/bin/docker "$@"; }   # Debian's CLI, the daemon's own version

step "preflight: the Dockerfile copies every package pyproject.toml lists"
python3 - <<'EOF'
import re, sys, tomllib
include = tomllib.load(open("pyproject.toml", "rb"))["tool"]["setuptools"]["packages"]["find"]["include"]
dockerfile, ignore = open("Dockerfile").read(), open(".dockerignore").read().split()
missing = [p for p in (i.rstrip("*").rstrip(".") for i in include)
           if not re.search(rf"^COPY {re.escape(p)} ", dockerfile, re.M) or f"!{p}/" not in ignore]
if missing:
    sys.exit(f"pyproject.toml's packages {missing} are not copied by the Dockerfile (COPY <dir> ./<dir> and !<dir>/ in .dockerignore)")
EOF

step "start a private Docker daemon"
if pgrep -f -- "--bridge $BRIDGE" >/dev/null; then
  echo "another compose test is running (a dockerd on bridge $BRIDGE)" >&2; exit 2
fi
ip link del "$BRIDGE" 2>/dev/null || true   # left over from a run that could not clean up
BRIDGES_BEFORE=$(ip -o link show type bridge | awk -F': ' '{print $2}' | sed 's/@.*//' | tr '\n' ' ')
FORWARD_POLICY=$(iptables -S FORWARD | awk '$1 == "-P" {print $3}')
IP_FORWARD=$(sysctl -n net.ipv4.ip_forward)
# The daemon's data on a file system of its own, a sparse ext4 image loop-mounted: removing a data
# root's millions of layer files one by one took minutes on a busy machine; this is one unmount.
truncate -s 64G "$WORK/data.img"
mkdir -p "$WORK/data"
if ! { mkfs.ext4 -q -F -m 0 "$WORK/data.img" && mount -o loop "$WORK/data.img" "$WORK/data"; } 2>"$LOGS/loop.log"; then
  echo "no loop mount here ($(head -c 200 "$LOGS/loop.log")): the data root is a plain folder"
  rm -f "$WORK/data.img"
fi
ip link add "$BRIDGE" type bridge
ip addr add "$BRIDGE_ADDR" dev "$BRIDGE"
ip link set "$BRIDGE" up
dockerd --storage-driver=overlay2 --data-root "$WORK/data" --exec-root "$WORK/x" -H "$DOCKER_HOST" \
  --pidfile "$WORK/docker.pid" --bridge "$BRIDGE" --ip 127.0.0.1 \
  --default-address-pool "base=$POOL,size=24" > "$LOGS/dockerd.log" 2>&1 &
DAEMON_PID=$!
for _ in $(seq 60); do docker version >/dev/null 2>&1 && break; sleep 0.5; done
docker version --format 'engine {{.Server.Version}}'
docker compose version

step "base image: debootstrap bookworm (cached), docker import"
rootfs=$CACHE/debian-bookworm-minbase.tar
if [ ! -s "$rootfs" ] || [ -n "$(find "$rootfs" -mtime +7)" ]; then
  timed debootstrap debootstrap --variant=minbase bookworm "$WORK/rootfs" "$DEBIAN_MIRROR" > "$LOGS/debootstrap.log" 2>&1
  rm -rf "$WORK"/rootfs/var/cache/apt/archives/*.deb "$WORK"/rootfs/var/lib/apt/lists/*
  tar -C "$WORK/rootfs" -cf "$rootfs.tmp" . && mv "$rootfs.tmp" "$rootfs"
  rm -rf "$WORK/rootfs"
fi
docker import "$rootfs" "$TAG/debian:bookworm" >/dev/null

step "stand-in images: python, redis, label-studio"
timed python docker build -q -f scripts/docker/python.Dockerfile --build-arg "DEBIAN_IMAGE=$TAG/debian:bookworm" \
  -t "$TAG/python:3.11-slim-bookworm" "$WORK/empty" > "$LOGS/build-python.log" 2>&1
# The CA bundle pip uses on this host (TLS-intercepting proxies): given to the builds, never committed.
ca=${PIP_CERT:-$(python3 -m pip config list 2>/dev/null | sed -n "s/^global\.cert='\(.*\)'$/\1/p" | head -n1)}
[ -n "$ca" ] || ca=/etc/ssl/certs/ca-certificates.crt
[ -f "$ca" ] && cp "$ca" "$WORK/ctx-ls/ca/host-ca.crt"
cp scripts/docker/label-studio.Dockerfile "$WORK/ctx-ls/Dockerfile"
( t=$SECONDS; docker build -q --build-arg "PYTHON_IMAGE=$TAG/python:3.11-slim-bookworm" \
    -t "$TAG/label-studio:1.23.2" "$WORK/ctx-ls" > "$LOGS/build-label-studio.log" 2>&1
  echo $((SECONDS - t)) > "$WORK/ls-build-s" ) &
ls_build=$!
timed redis docker build -q -f scripts/docker/redis.Dockerfile --build-arg "DEBIAN_IMAGE=$TAG/debian:bookworm" \
  -t "$TAG/redis:bookworm" "$WORK/empty" > "$LOGS/build-redis.log" 2>&1

step "prefloop's image: docker compose build (a copy of the working tree, local torch wheel and CA)"
git ls-files -co --exclude-standard -z | while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done \
  | tar --null -T - -cf - | tar -C "$WORK/deploy" -xf -
[ -f "$WORK/ctx-ls/ca/host-ca.crt" ] && cp "$WORK/ctx-ls/ca/host-ca.crt" "$WORK/deploy/scripts/docker/local/"
torch=$(sed -n 's/^torch==//p' constraints.txt)
if python3 -m pip download --no-index --no-deps "torch==$torch" -d "$WORK/deploy/scripts/docker/local" >/dev/null 2>&1; then
  torch_source="local wheel $(basename "$(ls "$WORK"/deploy/scripts/docker/local/torch-*.whl)")"
else
  torch_source="TORCH_VARIANT=cpu from PyTorch's index (no local wheel of torch $torch)"
fi
echo "torch: $torch_source"
cd "$WORK/deploy"
python3 "$REPO/scripts/docker/compose_drill.py" write-env --ls-port "$LS_PORT" --backend-port "$BACKEND_PORT" \
  --set "PYTHON_IMAGE=$TAG/python:3.11-slim-bookworm" "LABEL_STUDIO_IMAGE=$TAG/label-studio:1.23.2" \
  "REDIS_IMAGE=$TAG/redis:bookworm"
timed app docker compose build backend > "$LOGS/build-prefloop.log" 2>&1 \
  || { tail -n 40 "$LOGS/build-prefloop.log"; exit 1; }
wait "$ls_build" || { tail -n 40 "$LOGS/build-label-studio.log"; exit 1; }
TIMES[label-studio]=$(cat "$WORK/ls-build-s")
docker images --format '{{.Repository}}:{{.Tag}} {{.Size}}' | tee "$LOGS/images.txt"
image_size=$(docker image inspect prefloop:latest --format '{{.Size}}' | awk '{printf "%.2f GB", $1 / 1e9}')

step "the stack and the drill (scripts/docker/compose_drill.py)"
python3 "$REPO/scripts/docker/compose_drill.py" drill --ls-port "$LS_PORT" --backend-port "$BACKEND_PORT" \
  --summary "$LOGS/summary.json"
cd "$REPO"

step "done"
SUMMARY=$(python3 - "$LOGS/summary.json" "$image_size" "${TIMES[app]}" "${TIMES[label-studio]}" "${TIMES[python]}" "${TIMES[redis]}" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
size, app, ls, py, redis = sys.argv[2:]
print(f"stand-in images built (python {py}s, redis {redis}s, label-studio {ls}s), prefloop's image {size} in {app}s "
      f"(code-change rebuild {s['rebuild_s']}s); stack up with init done in {s['stack_up_s']}s; "
      f"{s['tasks']} prompt-only tasks filled in {s['filled_s']}s; {s['annotations']} annotations -> reward version "
      f"{s['first_version']} in /versions and /setup; upgrade (build + up -d): init changed nothing, versions kept; "
      f"worker stopped mid-training: nothing half-published, job {s['retried_job']} retried by {s['retried_by']} "
      f"-> {s['retried_version']}")
EOF
)
du -sh "$WORK/data" 2>/dev/null | awk '{print "docker data root: " $1}'
