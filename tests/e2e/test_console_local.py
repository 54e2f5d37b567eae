"""The web console (``berth console``) in headless Chromium against make local: what a person
sees and does, page by page. Screenshots of each page land in ``.sandbox/artefacts/console``.

The console process signs every call as the caller (a local SigV4 profile here); the page
holds no AWS key, and opens berth's WebSocket itself with a single-use ticket.
"""

from __future__ import annotations

import io
import json
import shutil
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from berth_client.client import BerthClient, Settings
from berth_client.console import VENDOR, ConsoleServer
from tests.e2e.conftest import FAST_CONTEXT, FAST_ENV, Sandbox
from tests.e2e.test_workers_local import get, run, wait_for

pytestmark = pytest.mark.e2e

SANDBOX_CONTEXT = FAST_CONTEXT
SANDBOX_ENV = FAST_ENV
ARTEFACTS = Path(__file__).resolve().parents[2] / ".sandbox" / "artefacts" / "console"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = [  # this machine's network is closed: no background calls to Google
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 60_000


@pytest.fixture(scope="module")
def console(sandbox: Sandbox) -> Iterator[ConsoleServer]:
    assert (VENDOR / "xterm.js").is_file(), "make install bundles xterm.js into the console"
    settings = Settings(
        api_url=sandbox.url,
        profile="berth-local-console",
        config_file=sandbox.aws_config,
        credentials_file=sandbox.aws_credentials,
    )
    server = ConsoleServer(BerthClient(settings)).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any, console: ConsoleServer) -> Iterator[Any]:
    context = browser.new_context(  # the test's probes are evaluated scripts: past the CSP
        viewport={"width": 1280, "height": 800}, accept_downloads=True, bypass_csp=True
    )
    opened = context.new_page()
    opened.set_default_timeout(WAIT_MS)
    problems: list[str] = []
    opened.on("pageerror", lambda error: problems.append(str(error)))
    opened.goto(console.url)
    opened.wait_for_selector("#live.on")  # the WebSocket is open (a ticket was minted)
    yield opened
    context.close()
    assert problems == [], problems  # no script error on any page


def shoot(page: Any, name: str) -> None:
    page.screenshot(path=str(ARTEFACTS / f"{name}.png"), full_page=True)


def terminal_text(page: Any) -> str:
    return str(page.evaluate("window.berthTerminal ? window.berthTerminal.text() : ''"))


def test_a_session_started_in_the_console_reaches_running_without_a_reload(page: Any) -> None:
    page.select_option("#profiles", "default")
    page.click("#start-session button[type=submit]")
    row = page.locator("#sessions tr").first
    row.locator(".status").wait_for()
    session_id = row.get_attribute("data-session")
    navigations = page.evaluate("performance.getEntriesByType('navigation').length")
    page.wait_for_selector(f'tr[data-session="{session_id}"] .status.RUNNING')
    assert page.evaluate("performance.getEntriesByType('navigation').length") == navigations
    assert page.url.endswith("/") or "#sessions" in page.url  # still the same page
    shoot(page, "sessions")
    page.locator(f'tr[data-session="{session_id}"] button', has_text="Stop").click()
    page.wait_for_selector(f'tr[data-session="{session_id}"] .status.STOPPED')


def open_terminal(page: Any, project: str) -> None:
    page.click("nav a[href='#terminal']")
    page.fill("#open-terminal input[name=project]", project)
    page.click("#open-terminal button[type=submit]")
    page.wait_for_function("window.berthTerminal && window.berthTerminal.text().includes('$')")
    page.click("#terminal")


def test_a_terminal_streams_lines_one_by_one(page: Any) -> None:
    open_terminal(page, "console-stream")
    page.keyboard.type("for i in 1 2 3; do echo $i; sleep 1; done")
    page.keyboard.press("Enter")
    after_prompt = (
        "(n) => { const lines = window.berthTerminal.text().split('\\n');"
        " const at = lines.findIndex((l) => l.startsWith('$ for'));"
        " return at >= 0 && lines.slice(at + 1).filter((l) => /^[0-9]$/.test(l)).length >= n; }"
    )
    seen: list[tuple[list[str], float]] = []
    for count in (1, 2, 3):  # each moment the output grows by a line
        page.wait_for_function(after_prompt, arg=count)
        text = terminal_text(page).split("\n")
        start = next(i for i, line in enumerate(text) if line.startswith("$ for"))
        seen.append(([line for line in text[start + 1 :] if line.isdigit()], time.monotonic()))
    assert [lines for lines, _ in seen] == [["1"], ["1", "2"], ["1", "2", "3"]]
    assert seen[2][1] - seen[0][1] >= 1.5  # about a second apart: streamed, not all at once
    page.wait_for_selector("#history .status.SUCCEEDED")
    assert "[SUCCEEDED 0]" in terminal_text(page)
    shoot(page, "terminal")


def test_ctrl_c_cancels_a_long_command(page: Any) -> None:
    open_terminal(page, "console-cancel")
    page.keyboard.type("echo started; sleep 300")
    page.keyboard.press("Enter")
    page.wait_for_function(  # the command's output, not the typed line
        "window.berthTerminal.text().split('\\n').includes('started')"
    )
    page.keyboard.press("Control+C")
    page.wait_for_selector("#history .status.CANCELLED")
    assert "[CANCELLED" in terminal_text(page)


def test_a_terminal_opened_mid_command_shows_what_it_printed_before(
    page: Any, sandbox: Sandbox
) -> None:
    """Output printed before the page listened comes from the command's saved log, in order."""
    queued = run(sandbox, "console", "console-late", "echo early; sleep 3; echo late")
    deadline = time.monotonic() + 60
    while "early" not in get(sandbox, "console", "console-late", queued["id"])["output_tail"]:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    open_terminal(page, "console-late")
    page.wait_for_function("window.berthTerminal.text().includes('early\\nlate\\n[SUCCEEDED 0]')")


def test_a_job_started_from_the_catalogue_downloads_its_result(page: Any) -> None:
    page.click("nav a[href='#jobs']")
    page.select_option("#runners", "checksum")
    page.fill("#run-job textarea", json.dumps({"text": "hello"}))
    page.click("#run-job button[type=submit]")
    link = page.locator("#jobs tr").first.get_by_text("Download result")
    link.wait_for()
    shoot(page, "jobs")
    with page.expect_download() as downloaded:
        link.click()
    data = Path(downloaded.value.path()).read_bytes()
    files = zipfile.ZipFile(io.BytesIO(data))
    assert json.loads(files.read("checksums.json"))["bytes"] == 5


def test_bad_input_is_shown_in_words(page: Any) -> None:
    page.click("nav a[href='#jobs']")
    page.fill("#run-job textarea", "{not json")
    page.click("#run-job button[type=submit]")
    assert "not valid JSON" in page.locator("#error").inner_text()
    page.click("nav a[href='#instances']")
    page.fill("#create-instance input[name=blob_id]", "../../etc/passwd")
    page.click("#create-instance button[type=submit]")
    page.wait_for_function(
        "!document.querySelector('#error').hidden"
        " && !document.querySelector('#error').innerText.includes('JSON')"
    )
    message = page.locator("#error").inner_text()
    assert "Traceback" not in message
    assert message.endswith("(invalid_request)"), message  # the API's words and code
    shoot(page, "instances")


def test_usage_and_a_phone_sized_screen(page: Any) -> None:
    page.click("nav a[href='#usage']")
    page.wait_for_function("document.querySelector('#budget').innerText.includes('Spent')")
    shoot(page, "usage")
    page.set_viewport_size({"width": 390, "height": 844})
    page.click("nav a[href='#sessions']")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390  # nothing runs off the side of a phone
    shoot(page, "sessions-phone")


def test_the_proxy_refuses_other_sites_and_other_hosts(console: ConsoleServer) -> None:
    import urllib.error
    import urllib.request

    def status(path: str, headers: dict[str, str]) -> int:
        request = urllib.request.Request(console.url.rstrip("/") + path, headers=headers)  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310
                return int(answer.status)
        except urllib.error.HTTPError as error:
            refused = json.loads(error.read())["error"]  # berth's shape, never a page
            return int(error.code) if refused["code"] else 0

    assert status("/api/sessions", {}) == 403  # a cross-site request has no secret
    assert status("/api/sessions", {"X-Berth-Console": "guess"}) == 403
    secret = {"X-Berth-Console": console.secret}
    assert status("/api/sessions", secret) == 200
    assert status("/api/sessions", {**secret, "Host": "evil.example"}) == 403  # DNS rebinding
    assert status("/../../etc/passwd", {}) == 404


def test_the_example_page_shows_a_terminal_from_a_connect_url(
    browser: Any, console: ConsoleServer, sandbox: Sandbox
) -> None:
    """What a product does: its backend asks for a connect URL, its page opens it."""
    first = run(sandbox, "emma", "console-embed", "true")
    wait_for(sandbox, "emma", "console-embed", first["id"])  # its end is not what to show
    code, link = sandbox.request(
        "POST", "/workspaces/console-embed/terminals/t1/connect", user="emma"
    )
    assert code == 200, link
    context = browser.new_context(viewport={"width": 1280, "height": 800}, bypass_csp=True)
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    page.goto(f"{console.url}terminal.html?url={link['url']}")
    page.wait_for_function("document.getElementById('state').innerText === 'live'")
    assert "ticket=" not in page.url  # not left in the address bar or history
    run(sandbox, "emma", "console-embed", "echo hello from berth")
    page.wait_for_function(
        "window.berthTerminal.text().includes('hello from berth\\n[SUCCEEDED 0]')"
    )
    shoot(page, "example-terminal")
    again = context.new_page()
    again.goto(f"{console.url}terminal.html?url={link['url']}")
    again.wait_for_function(  # used once already: the socket is refused
        "['disconnected', 'could not'].some("
        "(w) => document.getElementById('state').innerText.startsWith(w))"
    )
    context.close()
