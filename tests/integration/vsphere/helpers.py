"""Running modules as Ansible runs them (a subprocess with an args file)."""

import json
import os
import subprocess
import sys
import uuid

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
COLLECTIONS = os.path.join(REPO, ".work", "collections")
MODULES = os.path.join(REPO, "plugins", "modules")


def run_module(module, tmp_path, check_mode=False, proc_timeout=600, **args):
    """(result dict, raw stdout+stderr) of one module run."""
    args = dict(args, _ansible_check_mode=check_mode)
    args_file = tmp_path / f"args-{uuid.uuid4().hex[:8]}.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    proc = subprocess.run([sys.executable, os.path.join(MODULES, f"{module}.py"), str(args_file)],
                          capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=COLLECTIONS),
                          timeout=proc_timeout, check=False)
    args_file.unlink()
    assert proc.stdout, proc.stderr
    return json.loads(proc.stdout), proc.stdout + proc.stderr


def start_module(module, tmp_path, **args):
    """The module as a running process (to kill it midway); the args file stays until the test ends."""
    args_file = tmp_path / f"args-{uuid.uuid4().hex[:8]}.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    return subprocess.Popen([sys.executable, os.path.join(MODULES, f"{module}.py"), str(args_file)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=dict(os.environ, PYTHONPATH=COLLECTIONS))
