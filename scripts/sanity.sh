#!/usr/bin/env bash
# ansible-test sanity needs the collection at .../ansible_collections/v2kvm/migrate: run it
# on a fresh copy there (the repo itself may sit anywhere).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
dest=$here/.work/sanity/ansible_collections/v2kvm/migrate
# One run at a time: the copy below is renewed in place, so a second run would pull it away.
mkdir -p "$here/.work"
exec 9>"$here/.work/sanity.lock"
flock 9
mkdir -p "$dest"
# The copy holds what git would (tracked or not ignored) and is a git repo of its own, because
# ansible-test lists content through the nearest git repo and ours ignores .work/.
# tests/output keeps ansible-test's venvs between runs, so set it aside while the copy is renewed.
keep=$here/.work/sanity/output
rm -rf "$keep"
[ -d "$dest/tests/output" ] && mv "$dest/tests/output" "$keep"
rm -rf "$dest"
mkdir -p "$dest"
git -C "$here" ls-files -z --cached --others --exclude-standard \
  | rsync -a --from0 --files-from=- "$here/" "$dest/"
git -C "$dest" init -q
git -C "$dest" add -A
[ -d "$keep" ] && mv "$keep" "$dest/tests/output"
# ansible-test fetches get-pip.py from outside PyPI; give it a cached stand-in instead.
pip_pin=$("$here/.venv/bin/python" -c 'from ansible_test._internal.python_requirements import get_venv_packages as g
class P: version = None
print(g(P())["pip"])')
cache=~/.ansible/test/cache/get_pip_${pip_pin//./_}.py
mkdir -p "$(dirname "$cache")"
cmp -s "$here/scripts/ansible_test_get_pip.py" "$cache" || cp "$here/scripts/ansible_test_get_pip.py" "$cache"
cd "$dest"
py=$("$here/.venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
# --venv: each sanity test gets the tool versions ansible-test pins, installed from PyPI once.
exec "$here/.venv/bin/ansible-test" sanity --venv --python "$py" --color no "$@"
