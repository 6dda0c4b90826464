#!/usr/bin/env bash
# `make test-multihost`: the ensemble on a real Docker swarm of three hosts (root; CI runs it after test-compose).
#  1. images: the current code's, `docker compose build` with the offline override in test-compose's engine (its
#     private dockerd under var/docker when the machine has none): seconds when test-compose just built them,
#     the full offline build (README's lines, as test_compose.sh runs them) when not;
#  2. hosts: three network namespaces h1 h2 h3 on a bridge, one dockerd each, data roots on loop-mounted files
#     (scripts/multihost_hosts.sh); the images each host runs, `docker save | docker load` (h1: redis, s3,
#     gateway, fusion; h2 and h3: worker, model-server), tagged as deploy/swarm/stack.yml names them;
#  3. a swarm: init on h1, h2 and h3 join; labels empathy.role (h1 core, h2 h3 worker) and empathy.host;
#     h3 starts drained (every modality on h2 first); `docker stack deploy --resolve-image never` of
#     deploy/swarm/stack.yml with the secrets made here, first with every worker and model server at 0 replicas,
#     the bundled models pushed into the stack's object store (`empathy models push`, run in the gateway's
#     container: the store is not published), then again with the stack's own replicas;
#  4. scripts/multihost_checks.py, only through the gateway's port published on h1's address (docs/deploy.md,
#     "make test-multihost"): convergence, jobs on one host and across two, `docker service scale`, h3 taken off
#     the network while it holds tasks, jobs/hour per worker hosts under a CPU quota, no job file on any host's
#     disk; the table goes to var/multihost/report.md;
#  5. teardown whatever happened (a trap): daemons, mounts, loop devices, namespaces, veths, bridge, cgroups,
#     then a check that none is left.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
HOSTS=scripts/multihost_hosts.sh
OUT=var/multihost
STACK=empathy
t0=$(date +%s)
engine_started=""
engine_stopped=""   # set once this script has started and stopped the build engine: then nothing of it may stay
wheels_pid=""
hosts_started=""
swarm_started=""

now() { date +%s; }
log() { echo "test-multihost: $*"; }
h() { "$HOSTS" docker "$@"; }
cleanup() {  # cleanup [STATUS]: STATUS for a signal (the last command's status would say 0)
  rc=$?
  if [ -n "${1:-}" ]; then rc=$1; fi
  trap - EXIT INT TERM
  if [ -n "$wheels_pid" ]; then kill "$wheels_pid" 2>/dev/null || true; fi
  if [ -n "$swarm_started" ] && [ "$rc" -ne 0 ]; then
    log "FAILED (exit $rc); the stack as it was:"
    h h1 service ls 2>&1 || true
    h h1 stack ps "$STACK" --format '{{.Name}} {{.Node}} {{.CurrentState}} {{.Error}}' 2>&1 | head -60 || true
    for service in gateway fusion s3; do
      log "--- $service"; h h1 service logs --no-task-ids --tail 15 "${STACK}_$service" 2>&1 | tail -15 || true
    done
  fi
  if [ -n "$engine_started" ]; then scripts/compose_engine.sh stop || true; fi
  if [ -n "$engine_stopped" ] && findmnt -rn -o TARGET | grep -q "^${TMPDIR:-/tmp}/empd-"; then
    log "teardown left the build engine's mounts: $(findmnt -rn -o TARGET | grep "^${TMPDIR:-/tmp}/empd-" | tr '\n' ' ')"
    rc=1
  fi
  if [ -n "$hosts_started" ]; then
    started=$(now)
    "$HOSTS" down || true
    if left=$("$HOSTS" leftovers); then
      log "teardown in $(( $(now) - started )) s: no namespace, daemon, mount, loop device, veth, bridge, cgroup or process left"
    else
      log "teardown left: $left"
      rc=1
    fi
  fi
  log "$([ "$rc" -eq 0 ] && echo passed || echo FAILED) in $(( $(now) - t0 )) s"
  exit "$rc"
}
trap cleanup EXIT
trap 'cleanup 130' INT
trap 'cleanup 143' TERM
[ "$(id -u)" -eq 0 ] || { log "needs root (network namespaces, mounts, one dockerd per host)"; exit 1; }
mkdir -p "$OUT"
rm -f "$OUT/report.json" "$OUT/report.md"

# 1. images of the current code, in test-compose's engine
if ! docker version >/dev/null 2>&1; then
  eval "$(scripts/compose_engine.sh start)"
  engine_started=1
fi
docker compose version >/dev/null 2>&1 || eval "$(scripts/compose_engine.sh plugin)"
export COMPOSE_FILE=docker-compose.yml:compose.offline.yml
started=$(now)
# --- README "With Docker", the offline lines (as scripts/test_compose.sh runs them) ---
export EMPATHY_BASE_IMAGE=$(scripts/base_image.sh)
scripts/wheelhouse.sh "$EMPATHY_BASE_IMAGE"
python3 -m http.server --bind 127.0.0.1 "${EMPATHY_WHEELHOUSE_PORT:-8765}" --directory var/wheelhouse >/dev/null 2>&1 & wheels_pid=$!
docker compose build --quiet
kill "$wheels_pid"; wheels_pid=""
# the stack's image (deploy/swarm/stack.yml: empathy/<Dockerfile target>) <- the compose image holding it
declare -A SOURCE=([gateway]=empathy-gateway [fusion]=empathy-fusion [worker]=empathy-audio
                   [model-server]=empathy-model-server:latest [redis]=empathy-redis:latest [s3]=empathy-s3:latest)
CORE_IMAGES=(redis s3 gateway fusion)
WORKER_IMAGES=(worker model-server)
log "images built in $(( $(now) - started )) s (from the cache when test-compose built them)"

# 2. hosts, and the images each one runs
started=$(now)
hosts_started=1
"$HOSTS" up
H1=$("$HOSTS" addr h1)
save() { local t names=(); for t in "$@"; do names+=("${SOURCE[$t]}"); done; docker save "${names[@]}"; }
tag() { local host=$1 t; shift; for t in "$@"; do h "$host" tag "${SOURCE[$t]}" "empathy/$t:latest"; done; }
# one `docker save` per image set: h2 and h3 load the same stream (tee into a fifo), h1 its own meanwhile
rm -f "$OUT/h3.images"; mkfifo "$OUT/h3.images"
h h3 load -q -i "$OUT/h3.images" >/dev/null & p3=$!
save "${CORE_IMAGES[@]}" | h h1 load -q >/dev/null & p1=$!
save "${WORKER_IMAGES[@]}" | tee "$OUT/h3.images" | h h2 load -q >/dev/null
wait "$p1" && wait "$p3"
rm -f "$OUT/h3.images"
tag h1 "${CORE_IMAGES[@]}"; tag h2 "${WORKER_IMAGES[@]}"; tag h3 "${WORKER_IMAGES[@]}"
if [ -n "$engine_started" ]; then scripts/compose_engine.sh stop; engine_started=""; engine_stopped=1; fi
images_s=$(( $(now) - started ))
log "hosts up and images loaded in ${images_s} s"

# 3. the swarm, the stack, the models
swarm_started=1
h h1 swarm init --advertise-addr "$H1" --listen-addr "$H1:2377" --default-addr-pool 10.232.0.0/16 >/dev/null
token=$(h h1 swarm join-token -q worker)
for host in h2 h3; do
  h "$host" swarm join --token "$token" --advertise-addr "$("$HOSTS" addr "$host")" \
    --listen-addr "$("$HOSTS" addr "$host"):2377" "$H1:2377" >/dev/null
done
for host in h1 h2 h3; do
  role=$([ "$host" = h1 ] && echo core || echo worker)
  h h1 node update --label-add "empathy.role=$role" --label-add "empathy.host=$host" "$host" >/dev/null
done
h h1 node update --availability drain h3 >/dev/null   # every modality on h2 first; the checks bring h3 in
mkdir -p "$OUT/secrets"
python3 -c 'import secrets; print("ci:" + secrets.token_hex(16))' >"$OUT/secrets/api_keys"
python3 -c 'import secrets; print(secrets.token_hex(10), end="")' >"$OUT/secrets/s3_access_key"
python3 -c 'import secrets; print(secrets.token_hex(20), end="")' >"$OUT/secrets/s3_secret_key"
chmod 600 "$OUT"/secrets/*
export EMPATHY_API_KEYS_HOST_FILE=$PWD/$OUT/secrets/api_keys
export EMPATHY_S3_ACCESS_KEY_HOST_FILE=$PWD/$OUT/secrets/s3_access_key
export EMPATHY_S3_SECRET_KEY_HOST_FILE=$PWD/$OUT/secrets/s3_secret_key
# the test's own settings (as test-compose's): re-delivery of a lost host's tasks within about a minute
export EMPATHY_GATEWAY_PORT=8080 EMPATHY_TASK_VISIBILITY_TIMEOUT_S=60 EMPATHY_TASK_RESTORE_INTERVAL_S=5
deployed_at=$(now)
# first the core alone (every worker and model server at 0 replicas), the models pushed into its store, then the
# whole stack: workers and the fusion worker mirror the models at start (and poll only every 30 s after that)
none=()
for variable in $(grep -o '\${[A-Z_]*_REPLICAS' deploy/swarm/stack.yml | cut -c3- | sort -u); do none+=("$variable=0"); done
env "${none[@]}" "$HOSTS" docker h1 stack deploy --resolve-image never -c deploy/swarm/stack.yml "$STACK" >/dev/null
gateway_task() { h h1 ps -q --filter "label=com.docker.swarm.service.name=${STACK}_gateway" --filter status=running | head -1; }
for _ in $(seq 1 120); do [ -n "$(gateway_task)" ] && break; sleep 1; done
[ -n "$(gateway_task)" ] || { log "the gateway did not start within 120 s"; exit 1; }
# the bundled models into the store, from inside the stack (the gateway's container has the CLI and the secrets)
models=${EMPATHY_MODELS_HOST_DIR:-./models}
tar -C "$models" -c . | h h1 exec -i "$(gateway_task)" sh -c 'mkdir -p /tmp/push && tar -x -C /tmp/push'
for attempt in $(seq 1 30); do  # the store may still be starting
  if pushed=$(h h1 exec "$(gateway_task)" python -m cli models push --models-dir /tmp/push 2>/dev/null); then break; fi
  [ "$attempt" -lt 30 ] || { log "empathy models push failed: $(h h1 exec "$(gateway_task)" python -m cli models push --models-dir /tmp/push 2>&1 | tail -3)"; exit 1; }
  sleep 2
done
h h1 exec "$(gateway_task)" rm -rf /tmp/push
log "models pushed into the stack's store $(( $(now) - deployed_at )) s after the core's deploy: $pushed"
h h1 stack deploy --resolve-image never -c deploy/swarm/stack.yml "$STACK" >/dev/null

# 4. the checks, through the gateway's published port only
$PY scripts/multihost_checks.py --gateway "http://$H1:$EMPATHY_GATEWAY_PORT" --api-key-file "$OUT/secrets/api_keys" \
  --stack "$STACK" --deployed-at "$deployed_at" --images-s "$images_s"
