#!/usr/bin/env bash
# Three "hosts" on one machine for `make test-multihost` (scripts/test_multihost.sh; root):
#   scripts/multihost_hosts.sh up        # bridge, namespaces h1 h2 h3, one dockerd each (prints nothing on stdout)
#   scripts/multihost_hosts.sh down      # stops and removes everything `up` made, whatever state it is in
#   scripts/multihost_hosts.sh leftovers # prints what of it is still there (nothing: exit 0)
#   scripts/multihost_hosts.sh docker H ARGS...   # the docker CLI against host H's daemon
#   scripts/multihost_hosts.sh addr H    # H's address on the bridge
#   scripts/multihost_hosts.sh quota H CPUS|off   # limit everything host H runs to CPUS cores (cgroup cpu quota)
#   scripts/multihost_hosts.sh link H down|up     # take H off the network (its eth0) or bring it back
# Each host: a network namespace emp-H (eth0 on the bridge empmh0, 10.231.0.1N/24; the machine itself is
# 10.231.0.254 on the bridge and reaches the hosts' published ports there), its own UTS namespace (hostname H, so
# swarm node names and container names differ per host), a dockerd with its own socket, exec root, pid file and
# data root. Why a loop-mounted sparse ext4 file per data root: tearing down gigabytes of image layers is then
# one umount and one rm (deleting the overlay2 trees file by file took minutes). Why the cgroup mounts: `ip netns
# exec` remounts /sys, which drops the cgroup v1 controllers; dockerd needs them. Each daemon puts its containers
# under the cgroup /empmh-H (--cgroup-parent), so one cpu.cfs_quota_us there limits the whole host (the test's
# CPU share per worker host). The daemons run with --iptables=true inside their namespaces only (a published
# `mode: host` port needs it); the machine's own iptables rules are never touched.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
HOSTS=(h1 h2 h3)
BRIDGE=empmh0
NET=10.231.0
MACHINE_ADDR=$NET.254
VAR=$REPO/var/multihost
RUN=${TMPDIR:-/tmp}/empmh-$(printf '%s' "$REPO" | sha1sum | cut -c1-8)   # sockets: short paths (~108 bytes max)
DISK_GB=${EMPATHY_MULTIHOST_DISK_GB:-24}   # sparse: only what is written takes space
CONTROLLERS=(cpu cpuacct cpuset memory devices freezer blkio pids)

log() { echo "multihost: $*" >&2; }
addr() { case "$1" in h1) echo "$NET.11" ;; h2) echo "$NET.12" ;; h3) echo "$NET.13" ;; *) return 1 ;; esac; }
hdocker() { local h=$1; shift; DOCKER_HOST="unix://$RUN/$h/docker.sock" docker "$@"; }

host_up() {
  local h=$1 ns=emp-$1 ip
  ip=$(addr "$h")
  ip netns add "$ns"
  ip link add "empv-$h" type veth peer name eth0 netns "$ns"
  ip link set "empv-$h" master "$BRIDGE" up
  ip -n "$ns" addr add "$ip/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" link set lo up
  ip -n "$ns" route add default via "$MACHINE_ADDR"
  # the data root: a sparse ext4 file, loop-mounted (autoclear: umount frees the loop device)
  mkdir -p "$VAR/disks" "$VAR/$h" "$RUN/$h"
  truncate -s "${DISK_GB}G" "$VAR/disks/$h.img"
  mkfs.ext4 -q -F -E lazy_itable_init=1,lazy_journal_init=1 "$VAR/disks/$h.img"
  mount -o loop,noatime "$VAR/disks/$h.img" "$VAR/$h"
  for c in "${CONTROLLERS[@]}" systemd; do mkdir -p "/sys/fs/cgroup/$c/empmh-$h"; done
  # dockerd in the namespace, in its own UTS namespace; the cgroup hierarchies mounted again first
  # shellcheck disable=SC2016
  DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1 ip netns exec "$ns" unshare --uts -- sh -c '
    set -e
    hostname "$1"
    mount -t tmpfs -o mode=755 cgroup /sys/fs/cgroup
    for c in cpu cpuacct cpuset memory devices freezer blkio pids; do
      mkdir -p /sys/fs/cgroup/$c; mount -t cgroup -o $c cgroup /sys/fs/cgroup/$c
    done
    mkdir -p /sys/fs/cgroup/systemd; mount -t cgroup -o none,name=systemd cgroup /sys/fs/cgroup/systemd
    exec dockerd --host "unix://$2/docker.sock" --data-root "$3" --exec-root "$2/exec" --pidfile "$2/dockerd.pid" \
      --storage-driver overlay2 --iptables=true --ip6tables=false --cgroup-parent "/empmh-$1" \
      --log-level warn' sh "$h" "$RUN/$h" "$VAR/$h/docker" >"$VAR/$h.dockerd.log" 2>&1 &
  echo $! >"$RUN/$h/launcher.pid"
}

up() {
  [ "$(id -u)" -eq 0 ] || { log "needs root (namespaces, mounts, dockerd)"; exit 1; }
  command -v dockerd >/dev/null 2>&1 || { log "dockerd missing: scripts/compose_engine.sh start installs docker.io"; exit 1; }
  if ip link show "$BRIDGE" >/dev/null 2>&1 || ip netns list | grep -q '^emp-h'; then
    log "a previous run's hosts are still there: removing them first"
    down
  fi
  mkdir -p "$VAR" "$RUN"
  ip link add "$BRIDGE" type bridge
  ip addr add "$MACHINE_ADDR/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  for h in "${HOSTS[@]}"; do host_up "$h"; done
  for h in "${HOSTS[@]}"; do
    for _ in $(seq 1 60); do hdocker "$h" version >/dev/null 2>&1 && break; sleep 0.5; done
    hdocker "$h" version >/dev/null 2>&1 || { log "dockerd of $h did not start:"; tail -20 "$VAR/$h.dockerd.log" >&2; exit 1; }
  done
  log "hosts up: $(for h in "${HOSTS[@]}"; do printf '%s=%s (dockerd %s, name %s) ' "$h" "$(addr "$h")" \
    "$(hdocker "$h" version -f '{{.Server.Version}}')" "$(hdocker "$h" info -f '{{.Name}}')"; done)"
}

stop_daemon() {
  local h=$1 pid=""
  [ -f "$RUN/$h/dockerd.pid" ] && pid=$(cat "$RUN/$h/dockerd.pid")
  [ -z "$pid" ] && [ -f "$RUN/$h/launcher.pid" ] && pid=$(cat "$RUN/$h/launcher.pid")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.5; done
  log "dockerd of $h ($pid) still running after 30 s: killing it and its processes"
  # everything left in that daemon's cgroups (containerd, shims, containers): by cgroup, not by name
  for procs in $(find "/sys/fs/cgroup/pids/empmh-$h" -name cgroup.procs 2>/dev/null); do
    xargs -r kill -KILL <"$procs" 2>/dev/null || true
  done
  kill -KILL "$pid" 2>/dev/null || true
  for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.5; done
}

down() {
  local h
  for h in "${HOSTS[@]}"; do stop_daemon "$h" & done
  wait
  for h in "${HOSTS[@]}"; do
    # containerd and its shims run in the namespace too: anything still in the netns goes
    if [ -e "/run/netns/emp-$h" ]; then
      for pid in $(ip netns pids "emp-$h" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
    fi
  done
  sleep 0.5
  for h in "${HOSTS[@]}"; do
    if mountpoint -q "$VAR/$h"; then umount "$VAR/$h" 2>/dev/null || umount -l "$VAR/$h"; fi
    # a loop device still attached to the file (when the autoclear could not run)
    for dev in $(losetup -j "$VAR/disks/$h.img" -O NAME -n 2>/dev/null); do losetup -d "$dev" || true; done
    rm -f "$VAR/disks/$h.img"
    [ -e "/run/netns/emp-$h" ] && ip netns del "emp-$h"
    ip link show "empv-$h" >/dev/null 2>&1 && ip link del "empv-$h"
    for c in "${CONTROLLERS[@]}" systemd; do
      # depth first: the daemon's containers' cgroups (empty once their processes are gone), then its own
      [ -d "/sys/fs/cgroup/$c/empmh-$h" ] && find "/sys/fs/cgroup/$c/empmh-$h" -depth -type d -exec rmdir {} + 2>/dev/null
    done
    rmdir "$VAR/$h" 2>/dev/null || true
  done
  if ip link show "$BRIDGE" >/dev/null 2>&1; then ip link del "$BRIDGE"; fi
  rm -rf "$RUN"
  rmdir "$VAR/disks" 2>/dev/null || true
  return 0
}

leftovers() {
  local found=0 h
  ip link show "$BRIDGE" >/dev/null 2>&1 && { echo "bridge $BRIDGE"; found=1; }
  for h in "${HOSTS[@]}"; do
    [ -e "/run/netns/emp-$h" ] && { echo "namespace emp-$h"; found=1; }
    ip link show "empv-$h" >/dev/null 2>&1 && { echo "veth empv-$h"; found=1; }
    mountpoint -q "$VAR/$h" 2>/dev/null && { echo "mount $VAR/$h"; found=1; }
    [ -e "$VAR/disks/$h.img" ] && { echo "disk file $VAR/disks/$h.img"; found=1; }
    [ -n "$(losetup -j "$VAR/disks/$h.img" 2>/dev/null)" ] && { echo "loop device of $h"; found=1; }
    for c in "${CONTROLLERS[@]}" systemd; do
      [ -d "/sys/fs/cgroup/$c/empmh-$h" ] && { echo "cgroup $c/empmh-$h"; found=1; }
    done
  done
  # processes: any dockerd/containerd whose command line names this run's directories
  if pgrep -f -- "$RUN/" >/dev/null 2>&1; then echo "processes: $(pgrep -f -a -- "$RUN/" | tr '\n' ';')"; found=1; fi
  findmnt -rn -o TARGET | grep -q "^$VAR/" && { echo "mounts under $VAR"; found=1; }
  [ -e "$RUN" ] && { echo "run directory $RUN"; found=1; }
  return $found
}

quota() {
  # the daemon's cgroup parent holds every container of the host: one quota for all of them
  local dir=/sys/fs/cgroup/cpu/empmh-$1
  [ -d "$dir" ] || { log "no cgroup $dir"; return 1; }
  echo 100000 >"$dir/cpu.cfs_period_us"
  if [ "$2" = off ]; then echo -1 >"$dir/cpu.cfs_quota_us"
  else echo "$(awk -v c="$2" 'BEGIN {printf "%d", c * 100000}')" >"$dir/cpu.cfs_quota_us"; fi
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  leftovers) leftovers ;;
  docker) shift; hdocker "$@" ;;
  addr) addr "$2" ;;
  quota) quota "$2" "$3" ;;
  link) ip -n "emp-$2" link set eth0 "$3" ;;
  *) echo "usage: $0 up|down|leftovers|docker H ARGS...|addr H|quota H CPUS|off|link H down|up" >&2; exit 2 ;;
esac
