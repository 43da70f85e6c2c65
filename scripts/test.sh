#!/usr/bin/env bash
# Every test: ruff, ansible-test sanity, ansible-lint, the execution environment's build context, then
# unit and integration tests in one pytest run (integration tests start their own libvirt daemon when
# none answers and stop it after).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
scripts/setup.sh
# The integration tests build disk images: the largest test takes about 1.5 GiB of scratch space and
# the shared fixtures about 1 GiB more. Say so up front instead of failing dozens of tests with ENOSPC.
need_mib=3072
for dir in "${TMPDIR:-/tmp}" "$here/.work"; do
  mkdir -p "$dir"
  avail_mib=$(( $(df -Pk "$dir" | awk 'NR==2 {print $4}') / 1024 ))
  if [ "$avail_mib" -lt "$need_mib" ]; then
    echo "test: only $avail_mib MiB free on the file system of $dir; the tests need about $need_mib MiB of" \
      "scratch space there. Free some space (or point TMPDIR at a bigger file system) and run again." >&2
    exit 1
  fi
done
echo "== ruff"
.venv/bin/ruff check .
echo "== ansible-test sanity"
scripts/sanity.sh
echo "== ansible-lint (production profile, .ansible-lint; offline: nothing is installed from Galaxy)"
ANSIBLE_COLLECTIONS_PATH="$here/.work/collections" PATH="$here/.venv/bin:$PATH" .venv/bin/ansible-lint --offline
echo "== ansible-builder create (execution-environment.yml; no container runtime needed)"
ee_dir=$(mktemp -d "${TMPDIR:-/tmp}/v2kvm-ee.XXXXXX")
trap 'rm -rf "$ee_dir"' EXIT
EE_DIR=$ee_dir scripts/build_ee_context.sh create --output-filename Containerfile
if [ ! -s "$ee_dir/context/Containerfile" ]; then
  echo "test: ansible-builder create wrote no Containerfile" >&2
  exit 1
fi
rm -rf "$ee_dir"
trap - EXIT
echo "== pytest (unit + integration)"
exec .venv/bin/pytest tests -ra "$@"
