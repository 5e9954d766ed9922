#!/usr/bin/env bash
# Build ocislim's air-gapped release artifacts for one CPython version (the one running
# this script; default /usr/bin/python3, or --python PY):
#
#   OUT/wheelhouse/                                   ocislim and every runtime dependency
#                                                     as wheels, for
#                                                     pip install --no-index --find-links
#   OUT/ocislim-VERSION-wheelhouse-cpXY-ARCH.tar.gz   the same directory as one file
#   OUT/ocislim-VERSION-cpXY-ARCH.pyz                 one executable file (a shiv zipapp)
#   OUT/SHA256SUMS                                    checksums of the two files above
#
# Building needs the package index (PyPI); installing or running the results needs
# nothing from the network.  The wheels of the compiled dependencies (zstandard, isal,
# rpds-py) are for this CPython version and machine only, so build on the kind of
# machine the pipeline runs on.  The .pyz is a shiv zipapp: on first run it extracts
# itself (C extensions cannot be imported from inside a zip file) to $SHIV_ROOT,
# default ~/.shiv, and later runs reuse that copy; it exports PYTHONPATH so that the
# helper processes ocislim starts (HTTP probes) find ocislim too.
#
# Usage: scripts/release.sh [--python PY] [--out DIR]     (default OUT: dist)
set -euo pipefail
umask 022
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${OCISLIM_BASE_PYTHON:-/usr/bin/python3}
OUT=dist
SHIV_VERSION=1.0.8
while (($#)); do
    case $1 in
        --python) PY=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "release.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
done
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' pyproject.toml | head -n 1)
TAG=$("$PY" -c 'import platform, sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}-{platform.machine()}")')
PYTHON_NAME=$("$PY" -c 'import sys; print(f"python{sys.version_info[0]}.{sys.version_info[1]}")')
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ocislim-release-XXXXXX")
trap 'rm -rf "$WORK"' EXIT

step() { echo "release: $*" >&2; }

# Build from a copy of the sources, so the checkout gets no build/ or egg-info.
mkdir "$WORK/src"
tar -C "$ROOT" --exclude=__pycache__ -cf - pyproject.toml README.md ocislim \
    | tar -C "$WORK/src" -xf -

step "build tools ($PY)"
"$PY" -m venv "$WORK/venv"
"$WORK/venv/bin/python" -m pip install --quiet "shiv==$SHIV_VERSION"

step "wheelhouse: ocislim $VERSION and its dependencies"
rm -rf "$OUT/wheelhouse"
"$WORK/venv/bin/python" -m pip wheel --quiet --wheel-dir "$OUT/wheelhouse" "$WORK/src"
WHEELHOUSE_TAR=$OUT/ocislim-$VERSION-wheelhouse-$TAG.tar.gz
tar -C "$OUT" --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner \
    -cf - wheelhouse | gzip -n >"$WHEELHOUSE_TAR"

step "zipapp: shiv $SHIV_VERSION from the wheelhouse only"
PYZ=$OUT/ocislim-$VERSION-$TAG.pyz
"$WORK/venv/bin/shiv" --console-script ocislim --output-file "$PYZ" \
    --python "/usr/bin/env $PYTHON_NAME" --reproducible --extend-pythonpath \
    --no-index --find-links "$OUT/wheelhouse" ocislim >/dev/null

# What was built must run here before it ships.
SHIV_ROOT=$WORK/shiv "$PY" "$PYZ" --version >/dev/null
(cd "$OUT" && sha256sum "$(basename "$WHEELHOUSE_TAR")" "$(basename "$PYZ")" >SHA256SUMS)
step "done:"
printf '%s\n' "$OUT/wheelhouse/" "$WHEELHOUSE_TAR" "$PYZ" "$OUT/SHA256SUMS"
