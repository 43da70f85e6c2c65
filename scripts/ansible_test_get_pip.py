"""Stand-in for the get-pip.py that ansible-test downloads from a host outside the package
registries this project may use. ansible-test runs it inside each fresh sanity venv with pip's
install options and the pinned packages (for example ``pip==24.2``); we bootstrap pip with the
interpreter's own ensurepip, then let that pip install the same pins from PyPI."""

import subprocess
import sys

# get-pip.py understands these; pip install does not.
GET_PIP_ONLY = {"--no-setuptools", "--no-wheel"}

# In a child process: ensurepip points PIP_CONFIG_FILE at /dev/null in its own environment,
# which would hide the machine's pip configuration (certificates, indexes) from the install.
subprocess.check_call([sys.executable, "-m", "ensurepip", "--upgrade"])
args = [a for a in sys.argv[1:] if a not in GET_PIP_ONLY]
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install", *args]))
