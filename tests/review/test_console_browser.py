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


def shown_key(page: Any) -> str:
    return str(page.get_attribute(".panel", "data-key"))


def wait_for_photo(page: Any, key_end: str) -> None:
    page.wait_for_function(
        "end => { const p = document.querySelector('.panel'); return p && p.dataset.key.endsWith(end)"
        " && p.querySelector('img').complete; }",
        arg=key_end,
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
    page.wait_for_function("document.querySelector('#message').textContent.includes('outside 0..5')")
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
    page.wait_for_function("document.querySelector('#message').textContent.includes('saved 0')")
    assert seeded.image(seeded.seeded[-1])["human_count"] == 0

    page.goto(console_url + "/?bin=BIN-3")  # newest photo first: the model said 2
    wait_for_photo(page, "BIN-3/20261126T090000Z-cam1.jpg")
    page.keyboard.press("Enter")
    page.wait_for_function("document.querySelector('#message').textContent.includes('saved 2')")
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
    page.wait_for_function("document.querySelector('#message').textContent.includes('bob already saved 1')")
    page.wait_for_selector(".panel .label")
    assert "labelled 1 by bob" in page.inner_text(".panel .label")
    assert seeded.image(photo)["human_count"] == 1 and seeded.image(photo)["reviewer"] == "bob"
