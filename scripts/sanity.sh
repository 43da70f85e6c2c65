#!/usr/bin/env bash
# ansible-test sanity needs the collection at .../ansible_collections/v2kvm/migrate: run it
# on a fresh copy there (the repo itself may sit anywhere).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
dest=$here/.work/sanity/ansible_collections/v2kvm/migrate
mkdir -p "$dest"
rsync -a --delete --exclude .venv --exclude .work --exclude .git --exclude tests/output \
  --exclude .pytest_cache --exclude .ruff_cache --exclude __pycache__ "$here/" "$dest/"
cd "$dest"
py=$("$here/.venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
# --venv: each sanity test gets the tool versions ansible-test pins, installed from PyPI once.
exec "$here/.venv/bin/ansible-test" sanity --venv --python "$py" --color no "$@"
