"""The part of AnsibleModule that module_utils entry points and reconcilers use (params, check_mode,
_diff, warn, fail_json), for unit tests that call them without a module process.

``fail_json`` raises ``Failed`` as the real one never returns; ``Failed.result`` is what it was given and
``str()`` of it the message, so ``pytest.raises(Failed, match=...)`` reads like the user's error.
"""


class Failed(Exception):
    def __init__(self, result):
        super().__init__(result.get("msg", ""))
        self.result = result


class FakeModule:
    def __init__(self, defaults=None, check_mode=False, diff=False, **params):
        self.params = dict(defaults or {}, **params)
        self.check_mode = check_mode
        self._diff = diff
        self.warnings = []

    def warn(self, text):
        self.warnings.append(text)

    def fail_json(self, **result):
        raise Failed(result)
