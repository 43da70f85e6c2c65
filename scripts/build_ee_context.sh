#!/usr/bin/env bash
# The execution environment's build context: builds this collection, names the tarball without its
# version (context-src/v2kvm-migrate.tar.gz, as execution-environment.yml expects), and runs
# ansible-builder on a copy of execution-environment.yml next to it.
#
#   scripts/build_ee_context.sh [create|build] [more ansible-builder options]
#
# `create` (the default) writes the Containerfile and its context to $EE_DIR/context; `build` also builds
# the image with podman or docker (e.g. `build -t v2kvm-migrate-ee:latest`). EE_DIR defaults to .work/ee
# in this repo and is emptied first.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
action=${1:-create}
case "$action" in
  create | build) shift || true ;;
  *) echo "usage: $0 [create|build] [ansible-builder options]" >&2; exit 2 ;;
esac
dir=${EE_DIR:-$here/.work/ee}
# The project's venv when there is one (make setup), else whatever is on PATH.
[ -x "$here/.venv/bin/ansible-builder" ] && PATH=$here/.venv/bin:$PATH
for tool in ansible-galaxy ansible-builder; do
  command -v "$tool" >/dev/null || { echo "build_ee_context: $tool not found (pip install ansible-builder)" >&2; exit 1; }
done

rm -rf "$dir"
mkdir -p "$dir/context-src" "$dir/galaxy"
ansible-galaxy collection build --force --output-path "$dir/galaxy" "$here" >/dev/null
built=("$dir"/galaxy/v2kvm-migrate-*.tar.gz)
[ "${#built[@]}" -eq 1 ] && [ -f "${built[0]}" ] || { echo "build_ee_context: expected one built collection in $dir/galaxy" >&2; exit 1; }
mv "${built[0]}" "$dir/context-src/v2kvm-migrate.tar.gz"
rmdir "$dir/galaxy"
cp "$here/execution-environment.yml" "$dir/execution-environment.yml"
exec ansible-builder "$action" -f "$dir/execution-environment.yml" --context "$dir/context" "$@"
