#!/usr/bin/env bash
# Set everything up, boot a virtual Pi lab on this machine and show it.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
piprov lab up --nodes "${NODES:-3}" --decoys "${DECOYS:-2}"
piprov lab status
