#!/usr/bin/env bash
# The README's first command: set up the venv (pip only; no root, no apt), then
# slim the committed demo image fixtures/demo.oci.tar.  Needs the network only
# for the first pip install; afterwards it runs offline.  Outputs go to out/.
set -euo pipefail
umask 022
cd "$(dirname "$0")/.."
# shellcheck source=scripts/venv.sh
source scripts/venv.sh
ensure_venv .venv .
ocislim=.venv/bin/ocislim
demo=fixtures/demo.oci.tar
mkdir -p out

# "build" slims the demo; "convert" (inspect, then flatten) needs no tracing.
mode=build

if [[ $mode == build ]]; then
    "$ocislim" build "$demo" -o out/demo.slim.oci.tar
else
    "$ocislim" inspect "$demo"
    echo
    "$ocislim" convert "$demo" out/demo-flat.oci.tar --flatten
    "$ocislim" inspect -q out/demo-flat.oci.tar
fi
