"""The page in real headless Chromium survives bad values: a message that is not JSON and a job, cards
and chart point of the wrong types show the #data-alert banner, and the other hosts keep updating from
the real server (scripts/web_dashboard.py) over its WebSocket."""

import os

import pytest

from web.test_web_dashboard_browser import _wait

pytestmark = pytest.mark.integration

GIB = 1 << 30

# One job with every field of a wrong type, junk beside it, and cards/chart point/alerts of wrong types.
INJECT_BAD_DELTA = """() => {
  const d = window.v2kvmDashboard;
  const bad = Array.from(d.state.jobs.values()).find((j) => j.host === "vm-bad");
  d.onMessage({type: "delta", seq: d.state.seq + 1,
    jobs: [{id: bad.id, host: {x: 1}, name: 7, status: ["running"], pct: "abc", started: "yesterday", rate: {},
            done: -Infinity, stage: null}, null, 5, {id: 12}],
    metrics: {active: "many", data_processed: -Infinity}, controller: {cpu_percent: "hot", rss: true, mem_percent: {}},
    point: {ts: "now", active: []}, alerts: [null, {id: "x", message: {}}]});
}"""


def _row_text(page, host, selector):
    return page.evaluate("""([host, selector]) => {
      const job = Array.from(window.v2kvmDashboard.state.jobs.values()).find((j) => j.host === host);
      const cell = job && document.querySelector('tr[data-id="' + job.id + '"] ' + selector);
      return cell ? cell.textContent : null;
    }""", [host, selector])


def test_one_bad_value_shows_an_alert_and_the_other_hosts_stay_live(web_server, page, screenshot_dir):
    server = web_server()
    hosts = ["vm-good", "vm-bad"]
    server.post("r1", [{"type": "run_start", "playbook": "bad-values.yml"},
                       {"type": "play_start", "play": "p", "hosts": hosts}]
                + [{"type": "task_start", "host": h, "task": "Convert", "task_uuid": "u1"} for h in hosts])
    page.goto(server.url)
    _wait(page, "window.v2kvmDashboard && window.v2kvmDashboard.state.jobs.size === 2")
    _wait(page, "document.querySelectorAll('#jobs-body tr').length === 2")
    assert page.locator("#data-alert").is_hidden()

    page.evaluate("""() => window.v2kvmDashboard.onRaw('{"type":"delta","jobs":[{"id":"x","pct":NaN}]}')""")
    _wait(page, "!document.getElementById('data-alert').hidden")
    assert "not JSON" in page.locator("#data-alert").text_content()
    page.evaluate(INJECT_BAD_DELTA)
    _wait(page, "/Ignored [0-9]+ bad values/.test(document.getElementById('data-alert').textContent)")

    # The rest stays live: a real progress sample of the other host reaches its row and the cards.
    server.post("r1", [{"type": "progress", "host": "vm-good", "task": "Convert", "task_uuid": "u1",
                        "stage": "convert", "done": GIB // 2, "total": GIB, "rate": 5e7}])
    _wait(page, "(() => { const t = Array.from(document.querySelectorAll('#jobs-body tr .pct'))"
                ".map((c) => c.textContent); return t.indexOf('50%') >= 0; })()")
    assert _row_text(page, "vm-good", ".stage") == "convert"
    assert _row_text(page, "vm-good", ".pct") == "50%"
    _wait(page, "document.getElementById('card-active').textContent === '2'")
    assert page.locator("#data-alert").is_visible()
    assert page.js_errors == []
    page.screenshot(path=os.path.join(screenshot_dir, "page-bad-values.png"))
