#!/usr/bin/env bash
# One machine, no credentials: start PostgreSQL and Redis if needed, then
# sync a local Git repository end to end with live progress.
#   scripts/demo.sh [PATH] [--branch B]     (default PATH: this checkout)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/services.sh
exec cargo run --quiet --locked -p projsync -- demo "$@"
