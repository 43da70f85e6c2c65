#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian 12 / Ubuntu machine: system packages (only the missing
# ones), a project venv with the Python requirements, and the collection linked into a local
# collections path. Quick when everything is already there.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)

# bindep.txt is the single list of system packages (also used by ansible-builder).
# Debian/Ubuntu lines only: a [platform:...] selector must name dpkg (rpm lines are for EE images).
mapfile -t wanted < <(sed -e 's/#.*//' -e '/^\s*$/d' bindep.txt \
  | awk '!/platform:/ || /platform:dpkg/ {print $1}')
missing=()
for pkg in "${wanted[@]}"; do
  # The test rig needs *a* kernel image, not Debian's meta-package (Ubuntu names it differently).
  if [ "$pkg" = linux-image-amd64 ] && compgen -G '/boot/vmlinuz-*' >/dev/null; then continue; fi
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing system packages: ${missing[*]}"
  "${sudo_cmd[@]}" apt-get update -qq
  if [[ " ${missing[*]} " == *" linux-image-amd64 "* ]] && ! apt-cache show linux-image-amd64 >/dev/null 2>&1; then
    missing=("${missing[@]/linux-image-amd64/linux-image-generic}")
  fi
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

venv=.venv
stamp=$venv/.requirements.sha256
want=$(cat requirements.txt requirements-dev.txt | sha256sum | cut -d' ' -f1)
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: preparing Python environment in $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check --upgrade pip
  "$venv/bin/pip" install -q --disable-pip-version-check -r requirements-dev.txt
  echo "$want" > "$stamp"
fi

# The collection is this repo: link it where ansible-core looks for v2kvm.migrate.
link=.work/collections/ansible_collections/v2kvm/migrate
mkdir -p "$(dirname "$link")"
[ -L "$link" ] || ln -sfn ../../../.. "$link"
echo "setup: ready"
