"""Drive sluice's dashboard in headless Chromium, acting on the API between
looks, and print what was measured as one JSON line.

The server must hold many tables (the first page is timed), one of them
`--table`, a view `analytics.orders` remapped twice, a run `--run`, and a
hydration of it in the snapshot phase (`--hydration`, run `run-1` attached
with session token `--hydration-token`, copying `--snapshot-id`). Screenshots of every view go
to `--screenshots`. Any check that fails raises, and the exit is non-zero.
"""

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait


def call(url, token, method, path, body=None):
    request = urllib.request.Request(
        url + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.loads(answer.read())
    except urllib.error.HTTPError as error:
        raise SystemExit(f"{method} {path}: {error.code} {error.read().decode()}")


def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1500,1000"):
        options.add_argument(flag)
    service = Service(executable_path=os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
    return webdriver.Chrome(options=options, service=service)


def main():
    parser = argparse.ArgumentParser()
    for name in ("--url", "--operator-token", "--admin-token", "--job-token", "--table",
                 "--hydration", "--hydration-token", "--snapshot-id", "--run", "--screenshots"):
        parser.add_argument(name, required=True)
    args = parser.parse_args()
    url, admin = args.url, args.admin_token
    os.makedirs(args.screenshots, exist_ok=True)
    measured = {}
    driver = browser()
    wait = WebDriverWait(driver, 10, poll_frequency=0.02)

    def shot(name):
        driver.save_screenshot(os.path.join(args.screenshots, f"{name}.png"))

    def sign_in(token):
        box = wait.until(lambda d: d.find_element(By.ID, "token"))
        box.clear()
        box.send_keys(token)
        driver.find_element(By.CSS_SELECTOR, "#login button").click()

    def login_error():
        return wait.until(lambda d: d.find_element(By.ID, "login-error").text or None)

    # Read in one script: the page re-renders on every event, so elements
    # found by one call may be gone by the next.
    def text_of(selector):
        return driver.execute_script(
            "return [...document.querySelectorAll(arguments[0])].map(e => e.innerText).join(' ')", selector)

    def attrs(selector, name):
        return driver.execute_script(
            "return [...document.querySelectorAll(arguments[0])].map(e => e.getAttribute(arguments[1]))",
            selector, name)

    try:
        driver.get(url + "/")
        shot("sign-in")
        # A token the server does not know, then one whose role may not watch.
        sign_in("not-a-token")
        measured["unknown_token"] = login_error()
        sign_in(args.job_token)
        measured["job_token"] = login_error()
        assert "operator or admin" in measured["job_token"], measured

        sign_in(args.operator_token)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "tr[data-table]"))
        wait.until(lambda d: d.find_element(By.ID, "live").text == "live")

        # The first page, timed from a fresh navigation (the token stays in
        # the tab's session).
        driver.get("about:blank")
        driver.get(url + "/#tables")
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "tr[data-table]"))
        measured["first_page_ms"] = driver.execute_script("return performance.now()")
        measured["first_page_requests"] = driver.execute_script(
            "return performance.getEntriesByType('resource').map(e => [e.name.replace(location.origin, ''), Math.round(e.startTime), Math.round(e.duration)])")
        names = attrs("tr[data-table]", "data-table")
        measured["first_page_rows"] = len(names)
        driver.execute_script("document.getElementById('next-page').click()")
        wait.until(lambda d: attrs("tr[data-table]", "data-table")[:1] not in ([], names[:1]))
        measured["second_page_first"] = attrs("tr[data-table]", "data-table")[0]

        # Filtered to the one table the story is about.
        driver.execute_script(
            "const box = document.getElementById('table-filter');"
            "box.value = arguments[0]; box.dispatchEvent(new Event('input')); box.dispatchEvent(new Event('change'))",
            args.table)
        wait.until(lambda d: attrs("tr[data-table]", "data-table") == [args.table])

        # A lease granted through the API shows without a reload.
        lease = call(url, admin, "POST", f"/v1/tables/{args.table}/leases",
                     {"mode": "read", "ttl_seconds": 300, "holder": "nightly-export", "purpose": "export"})
        granted = time.monotonic()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, f'tr[data-lease="{lease["lease_id"]}"]'))
        measured["lease_visible_ms"] = round((time.monotonic() - granted) * 1000)
        # A compaction asked for queues behind the readers, with its deadline.
        compaction = call(url, admin, "POST", f"/v1/tables/{args.table}/compactions",
                          {"requested_by": "dashboard-test", "reason": "small files"})
        wait.until(lambda d: "in queue" in text_of("tr.lease"))
        measured["tables_view"] = text_of(f'tr[data-table="{args.table}"], tr.lease')
        assert "nightly-export" in measured["tables_view"], measured
        assert "readers queue behind it" in measured["tables_view"], measured
        shot("tables")

        # A hydration's progress bar moves as progress is posted.
        driver.get(url + "/#hydrations")
        bar = f'tr[data-hydration="{args.hydration}"] .bar'
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, bar))
        session = f'tr[data-hydration="{args.hydration}"] [data-session]'
        assert attrs(session, "data-session") == ["run-1"], attrs(session, "data-session")
        percents = attrs(bar, "data-percent")
        for copied in (25, 70):
            call(url, admin, "POST", f"/v1/hydrations/{args.hydration}/progress",
                 {"token": int(args.hydration_token), "phase": "snapshot",
                  "snapshot_id": int(args.snapshot_id),
                  "rows_copied": copied, "rows_total": 100})
            posted = time.monotonic()
            want = f"{copied:.1f}"
            wait.until(lambda d: attrs(bar, "data-percent") == [want])
            measured[f"progress_{copied}_visible_ms"] = round((time.monotonic() - posted) * 1000)
            percents.append(want)
        measured["percents"] = percents
        # The lag says how old its log is: the test refreshed it on demand.
        log = f'tr[data-hydration="{args.hydration}"] [data-log]'
        assert attrs(log, "data-log") == ["on_demand"], attrs(log, "data-log")
        measured["log_note"] = text_of(log)
        assert "log checked" in measured["log_note"], measured
        shot("hydrations")

        driver.get(url + "/#compactions")
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, f'tr[data-compaction="{compaction["id"]}"]'))
        measured["compactions_view"] = text_of("tr[data-compaction]")
        shot("compactions")

        # A view, picked: its remap history, newest first.
        driver.get(url + "/#views")
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, 'tr[data-view="analytics/orders"] a'))
        driver.execute_script("document.querySelector('tr[data-view=\"analytics/orders\"] a').click()")
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#view-history tbody tr")) == 2)
        measured["view_history"] = text_of("#view-history tbody tr")
        shot("views")

        driver.get(url + "/#runs")
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, f'tr[data-run="{args.run}"]'))
        measured["runs_view"] = text_of(f'tr[data-run="{args.run}"]')
        shot("runs")

        # The event feed, live: releasing the lease shows up as it happens.
        driver.get(url + "/#events")
        wait.until(lambda d: "lease_granted" in text_of("tr[data-event]"))
        call(url, admin, "DELETE", f"/v1/leases/{lease['lease_id']}?token={lease['token']}")
        wait.until(lambda d: "lease_released" in text_of("tr[data-event]"))
        measured["event_kinds"] = sorted(set(text_of("tr[data-event] td:nth-child(2)").split()))
        shot("events")

        driver.get(url + "/api")
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "details.op"))
        measured["reference_paths"] = sorted(set(text_of(".path").split()))
        shot("api-reference")

        # Forgetting the token returns to the sign-in form, and a reload
        # does not bring it back.
        driver.get(url + "/")
        wait.until(lambda d: d.find_element(By.ID, "logout").is_displayed())
        driver.execute_script("document.getElementById('logout').click()")
        driver.refresh()
        measured["after_logout_login_shown"] = wait.until(lambda d: d.find_element(By.ID, "login").is_displayed())
        measured["console_errors"] = [
            e["message"] for e in driver.get_log("browser") if e.get("level") == "SEVERE"
            and "401" not in e["message"] and "403" not in e["message"]
        ]
    except Exception:
        shot("failure")
        print(json.dumps(measured), file=sys.stderr)
        raise
    finally:
        driver.quit()
    print(json.dumps(measured))


if __name__ == "__main__":
    main()
