"""Stand-ins for the Ansible objects a callback receives (host, task, task result, stats) and a clock
the test moves, for unit tests of the callbacks and their event source without a playbook run.

They carry only what the callbacks read. ``Result`` is shaped like ansible-core's CallbackTaskResult: the
worker's dict under ``_return_data``; asking ``_result`` (a deep copy in ansible-core) fails the test when
``copy_is_refused``, because the event source must not ask for it.
"""


class FakeClock:
    def __init__(self, start=1_700_000_000.0):
        self.now = start

    def __call__(self):
        return self.now


class Host:
    def __init__(self, name):
        self.name = name

    def get_name(self):
        return self.name


class Task:
    def __init__(self, name, uuid, action="v2kvm.migrate.disk_convert", role=None):
        self.name, self._uuid, self.action, self.role = name, uuid, action, role

    def get_name(self):
        return "%s : %s" % (self.role, self.name) if self.role else self.name


class Result:
    def __init__(self, host, task, data, copy_is_refused=False):
        self._host, self._task, self._return_data = host, task, data
        self._copy_is_refused = copy_is_refused

    @property
    def _result(self):
        if self._copy_is_refused:
            raise AssertionError("the source asked for a deep copy of the result")
        return self._return_data


class Stats:
    def __init__(self, summary):
        self.processed = dict.fromkeys(summary, 1)
        self._summary = summary

    def summarize(self, host):
        return self._summary[host]
