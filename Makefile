# Two entry points (see README): `make demo` runs a real migration of the demo fleet,
# `make test` runs every test. Both do their own set-up.
.PHONY: demo test setup lint unit sanity integration bench demo-clean ee screenshots

demo:
	scripts/demo.sh

test:
	scripts/test.sh

setup:
	scripts/setup.sh

lint: setup
	.venv/bin/ruff check .
	ANSIBLE_COLLECTIONS_PATH=$(CURDIR)/.work/collections PATH=$(CURDIR)/.venv/bin:$$PATH .venv/bin/ansible-lint --offline

unit: setup
	.venv/bin/pytest tests/unit -q

sanity: setup
	scripts/sanity.sh

integration: setup
	.venv/bin/pytest tests/integration -q

# The pictures in docs/images from a real run of the demo fleet (root, libvirt, tmux, chromium).
screenshots: setup
	.venv/bin/python scripts/screenshots.py

bench:
	scripts/bench.sh

# The execution environment's build context in .work/ee (docs/ee.md; `scripts/build_ee_context.sh build` builds the image).
ee: setup
	scripts/build_ee_context.sh create

demo-clean: setup
	for vm in demo-bios demo-twodisk demo-uefi demo-broken; do \
	  ANSIBLE_COLLECTIONS_PATH=.work/collections .venv/bin/ansible localhost -o \
	    -e ansible_python_interpreter=$(CURDIR)/.venv/bin/python \
	    -m v2kvm.migrate.domain -a "name=$$vm state=absent remove_volumes=true"; done
