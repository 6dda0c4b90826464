#!/usr/bin/env bash
# Makes sure the engine in DOCKER_HOST has a base image for the Dockerfile and prints its name:
#   scripts/base_image.sh [PUBLIC_IMAGE]     # default python:3.11-slim-bookworm (the Dockerfile's BASE_IMAGE)
# 1. the public image when it is present or can be pulled (a user online builds exactly what everyone builds);
# 2. otherwise (no registry reachable) the local image empathy-base:bookworm, made once from Debian packages with
#    debootstrap from the apt source this machine already uses (read at run time, never written to the repo):
#    Debian's Python 3.11 with venv and pip, CA certificates, nothing else (about 75 s and 275 MB).
set -euo pipefail
cd "$(dirname "$0")/.."
PUBLIC=${1:-python:3.11-slim-bookworm}
LOCAL=empathy-base:bookworm

if docker image inspect "$PUBLIC" >/dev/null 2>&1 || timeout 60 docker pull -q "$PUBLIC" >/dev/null 2>&1; then
  echo "$PUBLIC"
  exit 0
fi
if docker image inspect "$LOCAL" >/dev/null 2>&1; then
  echo "$LOCAL"
  exit 0
fi

[ "$(id -u)" -eq 0 ] || { echo "base_image: cannot pull $PUBLIC and debootstrap needs root" >&2; exit 1; }
if ! command -v debootstrap >/dev/null 2>&1; then
  echo "base_image: installing debootstrap" >&2
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
fi
# The first Debian (not security) source of this machine: deb822 .sources files or a classic sources.list.
mirror=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}')
[ -n "$mirror" ] || mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
  | awk '$1 == "deb" && $0 !~ /security/ {for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) {print $i; exit}}')
mirror=${mirror:-http://deb.debian.org/debian}

root=var/base/rootfs
rm -rf "$root"
mkdir -p "$root"
echo "base_image: $PUBLIC cannot be pulled; building $LOCAL with debootstrap from $mirror" >&2
debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
  bookworm "$root" "$mirror" >var/base/debootstrap.log 2>&1 \
  || { tail -20 var/base/debootstrap.log >&2; exit 1; }
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
tar -C "$root" -c . | docker import -c 'CMD ["/bin/bash"]' -m "debootstrap bookworm minbase + python3" - "$LOCAL" >/dev/null
rm -rf "$root"
echo "$LOCAL"
