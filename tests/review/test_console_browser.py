"""The console in a real browser: Debian's chromium, headless, driven by Playwright (no download).

The console runs under uvicorn on 127.0.0.1 against the stack in moto (same process, so moto
answers the console's calls), with a few generated photos. A reviewer works with the keyboard
only; the test then reads the records and the events. Set ``REVIEW_SCREENSHOT=PATH`` to keep the
console's screenshot (the README's docs/img/review-console.png is made so).
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from review_support import ReviewStack, sk

from cli.review.app import create_app
from cli.review.service import ReviewService

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

if not CHROMIUM.exists():
    pytest.skip(
        "the browser test needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)",
        allow_module_level=True,
    )
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="the browser test needs `pip install playwright`"
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def console_url(service: ReviewService) -> Iterator[str]:
    """The console served by uvicorn in a thread, as `bincount review` serves it."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(service), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One chromium for the module (starting Playwright's driver and the browser costs more than a
    test); each test gets its own browser context, so no cookies, storage or cache carry over."""
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: Any, console_url: str) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1440, "height": 860})
    try:
        page = context.new_page()
        page.set_default_timeout(15_000)
        yield page
    finally:
        context.close()


def wait_for(page: Any, expression: str, arg: Any = None, timeout_s: float = 15.0) -> None:
    """Until ``expression`` (a JS function of ``arg``, or an expression) is truthy in the page.

    Playwright's ``wait_for_function`` polls with ``eval`` inside the page, which the console's
    Content-Security-Policy refuses (no 'unsafe-eval'); ``evaluate`` runs through the DevTools
    protocol, which the policy does not govern."""
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(expression, arg):
        if time.monotonic() > deadline:
            raise AssertionError(f"still false after {timeout_s} s: {expression}")
        time.sleep(0.05)


def shown_key(page: Any) -> str:
    return str(page.get_attribute(".panel", "data-key"))


def wait_for_photo(page: Any, key_end: str) -> None:
    wait_for(
        page,
        "end => { const p = document.querySelector('.panel'); return p && p.dataset.key.endsWith(end)"
        " && p.querySelector('img').complete; }",
        key_end,
    )


def test_reviewer_saves_two_photos_with_the_keyboard(
    seeded: ReviewStack, console_url: str, page: Any, tmp_path: Path
) -> None:
    first, second = seeded.seeded[1], seeded.seeded[2]  # BIN-1's two unsure photos, oldest first
    page.goto(console_url + "/")
    wait_for_photo(page, first.key)
    assert page.inner_text("#left") == "4"

    page.keyboard.press("4")
    assert page.inner_text(".panel output.pending") == "4"
    page.keyboard.press("Enter")
    wait_for_photo(page, second.key)  # no page reload: the next panel was preloaded
    assert "saved 4" in page.inner_text("#message")

    page.keyboard.press("7")  # outside 0..5: refused on the page, nothing written
    page.keyboard.press("Enter")
    wait_for(page, "document.querySelector('#message').textContent.includes('outside 0..5')")
    assert shown_key(page) == second.key and "human_count" not in seeded.image(second)

    page.keyboard.press("+")
    assert page.inner_text(".panel output.pending") == ">5"
    page.keyboard.press("Escape")
    page.keyboard.press("5")
    page.keyboard.press("Enter")
    wait_for_photo(page, "BIN-3/20261126T090000Z-cam1.jpg")
    assert page.inner_text("#left") == "2" and page.inner_text("#saved") == "2"

    page.keyboard.press("ArrowLeft")  # back to the saved photo: it shows its label now
    wait_for_photo(page, second.key)
    assert "labelled 5 by alice" in page.inner_text(".panel .label")
    page.keyboard.press("ArrowRight")
    wait_for_photo(page, "BIN-3/20261126T090000Z-cam1.jpg")
    page.keyboard.press("5")  # pending, not saved: what the screenshot shows

    first_record, second_record = seeded.image(first), seeded.image(second)
    assert (first_record["human_count"], first_record["reviewer"]) == (4, "alice")
    assert (second_record["human_count"], second_record["replaced_count"]) == (5, 4)
    assert seeded.latest("BIN-1")["count"] == 5  # its newest photo
    events = seeded.events()
    assert [(e["detail"]["image"]["key"], e["detail"]["count"]) for e in events] == [
        (first.key, 4),
        (second.key, 5),
    ]
    assert [e["detail"]["latest_updated"] for e in events] == [False, True]
    assert "human_count" not in seeded.image(seeded.seeded[6])  # the pending count was not saved

    shot = tmp_path / "review-console.png"
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000
    if os.environ.get("REVIEW_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["REVIEW_SCREENSHOT"])


def test_mouse_and_enter_alone_accept(seeded: ReviewStack, console_url: str, page: Any) -> None:
    page.goto(console_url + "/?bin=BIN-4")
    wait_for_photo(page, "BIN-4/20261126T090000Z-cam1.jpg")
    page.click(".choice[data-count='0']")
    page.click("button.save")
    wait_for(page, "document.querySelector('#message').textContent.includes('saved 0')")
    assert seeded.image(seeded.seeded[-1])["human_count"] == 0

    page.goto(console_url + "/?bin=BIN-3")  # newest photo first: the model said 2
    wait_for_photo(page, "BIN-3/20261126T090000Z-cam1.jpg")
    page.keyboard.press("Enter")
    wait_for(page, "document.querySelector('#message').textContent.includes('saved 2')")
    assert seeded.image(seeded.seeded[6])["human_count"] == 2


def test_a_stale_page_says_why_and_shows_the_record_as_it_is(
    seeded: ReviewStack, console_url: str, page: Any
) -> None:
    photo = seeded.seeded[-1]
    page.goto(console_url + "/?bin=BIN-4")
    wait_for_photo(page, photo.key)
    bob = ReviewService.for_stack(seeded.resources, reviewer="bob", photo_mode="proxy")
    bob.correct(photo.bin_id, sk(photo), "1")  # while alice looks at the photo
    page.keyboard.press("0")
    page.keyboard.press("Enter")
    wait_for(page, "document.querySelector('#message').textContent.includes('bob already saved 1')")
    page.wait_for_selector(".panel .label")
    assert "labelled 1 by bob" in page.inner_text(".panel .label")
    assert seeded.image(photo)["human_count"] == 1 and seeded.image(photo)["reviewer"] == "bob"


def forging_page(target: ReviewStack) -> bytes:
    """An HTML "photo" whose script saves a forged count through the console's API, as a reviewer's
    browser would send it (same origin, the write header set), and marks the page when it runs."""
    victim = target.seeded[1]  # BIN-1's unsure photo
    script = (
        "document.title = 'ran';"
        "fetch('/api/corrections', {method: 'POST', headers: {'Content-Type': 'application/json',"
        f" 'X-Bincount-Review': '1'}}, body: JSON.stringify({{bin_id: '{victim.bin_id}',"
        f" sk: '{sk(victim)}', count: '0'}})}}).then(() => {{ document.title = 'forged'; }});"
    )
    return (
        f"<!doctype html><html><head><title>photo</title><script>{script}</script></head>"
        f'<body><img src=x onerror="{script}"></body></html>'
    ).encode()


def test_an_html_photo_runs_nothing_and_changes_no_count(
    seeded: ReviewStack, console_url: str, page: Any
) -> None:
    """Uploaded under the ingest prefix with a photo's name and Content-Type text/html, recorded as
    a rejected (readable) photo so it reaches the review queue: shown in the console and opened on
    its own, its script never runs and no count changes."""
    html = seeded.photo("BIN-5", "20261126T100000Z", None, error="transform_failed",
                        body=forging_page(seeded), content_type="text/html")  # fmt: skip
    violations: list[str] = []
    page.on("console", lambda message: violations.append(message.text))
    page.goto(console_url + "/?bin=BIN-5")
    page.wait_for_selector(f".panel[data-sk='{sk(html)}']")
    photo_url = console_url + str(page.get_attribute(".panel img", "src"))
    wait_for(page, "document.querySelector('.panel img').complete")
    assert page.evaluate("document.querySelector('.panel img').naturalWidth") == 0  # not shown
    assert not [text for text in violations if "Content Security Policy" in text]  # the console runs

    opened = page.goto(photo_url)  # "open image in new tab"
    assert opened is not None and opened.status == 415
    assert opened.headers["content-type"].startswith("application/json")
    page.wait_for_timeout(500)  # what a script would need to send its request
    assert page.title() not in ("ran", "forged")

    labelled = [item for item in seeded.table.scan()["Items"] if "human_count" in item]
    assert labelled == [] and seeded.events() == []
