#!/usr/bin/env bash
# var/wheelhouse/: every wheel the images need (`scripts/requirements.py core all s3server`), fetched by this machine's own
# pip, so with this machine's index, certificates and constraints; sdists are built into wheels here. The offline
# build (compose.offline.yml) installs from it over http://127.0.0.1 with --no-index, so nothing of this machine's
# configuration enters the repository or an image.
#   scripts/wheelhouse.sh [BASE_IMAGE]     # with an image (and DOCKER_HOST): also complete it for that image's Python
# Why the second step: requirements carry environment markers (redis needs async-timeout below Python 3.11.3), and
# pip resolves markers for the interpreter that runs it, so the host's pip can miss what Debian's Python 3.11.2
# needs. The image's own pip resolves against the wheelhouse (--dry-run --no-index, no network) and every
# requirement it cannot find is fetched by the host's pip, until it resolves. Idempotent (stamp per inputs).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
IMAGE=${1:-}
out=var/wheelhouse
stamp=$out/.complete-$(cat pyproject.toml "$0" | sha1sum | cut -c1-12)-${IMAGE//[:\/]/_}
[ -f "$stamp" ] && exit 0
mkdir -p "$out"
python3 scripts/requirements.py core all s3server >var/requirements-all.txt
echo "wheelhouse: $(wc -l <var/requirements-all.txt) requirements and their dependencies -> $out" >&2
quiet() { grep -v "is ignored: it is neither a file nor a directory" || true; }  # the host's optional file:// indexes
"$PY" -m pip wheel -q --wheel-dir "$out" -r var/requirements-all.txt 2>&1 | quiet
if [ -n "$IMAGE" ]; then
  for _ in $(seq 1 20); do
    if log=$(docker run --rm --network none -v "$PWD/$out:/wheels:ro" -v "$PWD/var/requirements-all.txt:/req.txt:ro" \
        "$IMAGE" sh -c 'python3 -m venv /tmp/venv && /tmp/venv/bin/pip install -q --disable-pip-version-check \
        --dry-run --no-index --find-links /wheels -r /req.txt' 2>&1); then
      break
    fi
    missing=$(printf '%s\n' "$log" | sed -n 's/.*satisfies the requirement \([^;( ]*\).*/\1/p' | head -1)
    [ -n "$missing" ] || { printf '%s\n' "$log" >&2; echo "wheelhouse: $IMAGE cannot install from it" >&2; exit 1; }
    echo "wheelhouse: $IMAGE also needs $missing" >&2
    "$PY" -m pip wheel -q --no-deps --wheel-dir "$out" "$missing" 2>&1 | quiet
  done
fi
rm -f "$out"/.complete-*
touch "$stamp"
echo "wheelhouse: $(ls "$out"/*.whl | wc -l) wheels, $(du -sh "$out" | cut -f1)" >&2
