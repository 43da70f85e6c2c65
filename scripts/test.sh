#!/usr/bin/env bash
# Every test: lint, ansible-test sanity, then unit and integration tests in one pytest run
# (integration tests start their own libvirt daemon when none answers and stop it after).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
scripts/setup.sh
echo "== ruff"
.venv/bin/ruff check .
echo "== ansible-test sanity"
scripts/sanity.sh
echo "== pytest (unit + integration)"
exec .venv/bin/pytest tests -ra "$@"
