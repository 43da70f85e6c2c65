"""The web callback: the event source with the web sink. Events wait for the first play (its variables may
set the options), a delegated task's events carry its target and validate's verdict, and the end of the run
closes the publisher with its warnings; beside the dashboard callback both see the same run."""

import io

from ansible_collections.v2kvm.migrate.plugins.callback import dashboard, web
from rig.ansible_fakes import Host, Result, Stats, Task


class Inventory:
    def get_hosts(self, pattern):
        return [Host("web01")]


class VariableManager:
    _inventory = Inventory()

    def __init__(self, extra_vars):
        self.extra_vars = extra_vars


class Play:
    hosts = "all"

    def __init__(self, play_vars=None, extra_vars=None):
        self._vars, self._manager = play_vars or {}, VariableManager(extra_vars or {})

    def get_vars(self):
        return self._vars

    def get_variable_manager(self):
        return self._manager

    def get_name(self):
        return "migrate"


class Batcher:
    flush_interval = 0.5
    dropped = 2


class FakePublisher:
    def __init__(self, options):
        self.options, self.batcher, self.published, self.closed = options, Batcher(), [], False

    def start(self):
        return "http://127.0.0.1:8765/"

    def publish(self, event):
        self.published.append(event)

    def close(self):
        self.closed = True


def make_web(monkeypatch):
    made = []
    monkeypatch.setattr(web, "make_publisher", lambda options, clock: made.append(FakePublisher(options)) or made[-1])
    cb = web.CallbackModule(clock=lambda: 1000.0, live=False)
    cb._plugin_options = {"url": None, "token": None, "host": "127.0.0.1", "port": 0, "allow_hosts": [],
                          "auth_reads": False, "history": None, "linger": 0.0, "log_file": None, "run_label": None,
                          "validate_certs": True, "ca_path": None}
    # Outside a plugin loader there are no option definitions for set_option to check against.
    monkeypatch.setattr(cb, "set_option", cb._plugin_options.__setitem__)
    warnings = []
    monkeypatch.setattr(cb._display, "warning", warnings.append)
    monkeypatch.setattr(cb._display, "display", lambda text, **kwargs: None)
    return cb, made, warnings


def run(callbacks, play):
    host = Host("web01")
    validate = Task("Validate the migrated guest", "u-val", "v2kvm.migrate.validate")
    result = Result(host, validate, {"changed": True, "verdict": {"booted": True, "console": "login:\x1b[0m"},
                                     "_ansible_delegated_vars": {"ansible_delegated_host": "kvm2"}})
    for cb in callbacks:
        cb.v2_playbook_on_start(type("P", (), {"_file_name": "/x/migrate.yml"})())
    for cb in callbacks:
        cb.v2_playbook_on_play_start(play)
    for call, args in (("v2_runner_on_start", (host, validate)), ("v2_runner_on_ok", (result,)),
                       ("v2_playbook_on_stats", (Stats({"web01": {"failures": 0, "unreachable": 0}}),))):
        for cb in callbacks:
            getattr(cb, call)(*args)


def test_the_first_play_sets_the_options_then_the_waiting_events_and_the_rest_are_published(monkeypatch):
    cb, made, warnings = make_web(monkeypatch)
    run([cb], Play(play_vars={"v2kvm_web_allow_hosts": ["dash.example.com"]},
                   extra_vars={"v2kvm_web_allow_hosts": "a.example.com,b.example.com"}))
    [publisher] = made
    assert publisher.options["allow_hosts"] == ["a.example.com", "b.example.com"], "extra vars win"
    kinds = [event["type"] for event in publisher.published]
    assert kinds == ["run_start", "play_start", "task_start", "task_end", "vm_end", "run_end"]
    task_end = publisher.published[3]
    assert task_end["target"] == "kvm2" and task_end["verdict"] == {"booted": True, "console": "login:\\x1b[0m"}
    assert publisher.closed
    assert warnings == ["v2kvm.migrate.web: 2 events were not sent to the web dashboard: more waited than the run "
                        "keeps for it"]


def test_beside_the_dashboard_both_callbacks_see_the_same_run(monkeypatch, tmp_path):
    cb, made, _warnings = make_web(monkeypatch)
    out, events = io.StringIO(), tmp_path / "ev.jsonl"
    board_cb = dashboard.CallbackModule(stream=out, clock=lambda: 1000.0, live=False)
    board_cb._plugin_options = {"mode": "line", "line_interval": 10.0, "refresh_interval": 0.5,
                                "events_file": str(events), "summary_file": None, "junit_file": None, "keys": False,
                                "theme": "dark"}
    run([board_cb, cb], Play())
    assert board_cb.source.board.summary() == cb.source.board.summary()
    assert cb.source.board.vms["web01"].status == "succeeded"
    assert len(events.read_text().splitlines()) == len(made[0].published) == 6
    assert "web01" in out.getvalue()
