"""The console in a real browser: Debian's chromium, headless, driven by Playwright (no download).

The console runs under uvicorn on 127.0.0.1 against the stack in moto (same process, so moto
answers the console's calls), with a few generated photos. A reviewer works with the keyboard
only; the test then reads the records and the events. Set ``REVIEW_SCREENSHOT=PATH`` to keep the
console's screenshot (the README's docs/img/review-console.png is made so).
"""

from __future__ import annotations

import json
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
from review_support import REGION, STACK_NAME, ReviewStack, sk

from cli.main import main
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


def message_says(page: Any, text: str) -> None:
    wait_for(page, "t => document.querySelector('#message').textContent.includes(t)", text)


def chart_geometry(page: Any) -> list[dict[str, Any]]:
    """Each probability column as the browser drew it: bar bottom and height, track height, marks."""
    return list(
        page.evaluate(
            """() => [...document.querySelectorAll('.panel .chart .col')].map((col) => {
                const bar = col.querySelector('.bar').getBoundingClientRect();
                const track = col.querySelector('.track').getBoundingClientRect();
                return { bottom: bar.bottom, height: bar.height, width: track.width,
                         track: track.height, trackBottom: track.bottom,
                         model: col.classList.contains('model'),
                         outline: getComputedStyle(col.querySelector('.track')).strokeWidth,
                         pct: col.querySelector('.pct').textContent };
            })"""
        )
    )


def test_reviewer_saves_two_photos_with_the_keyboard(
    seeded: ReviewStack, console_url: str, page: Any, tmp_path: Path
) -> None:
    first, second = seeded.seeded[1], seeded.seeded[2]  # BIN-1's two unsure photos, oldest first
    page.goto(console_url + "/")
    wait_for_photo(page, first.key)
    assert page.inner_text("#left") == "4"
    keys = page.eval_on_selector_all("#keys dt", "items => items.map((item) => item.textContent)")
    assert keys == ["0 – 5", "+", "Enter", "a", "s", "←", "→", "Esc", "r"]

    page.keyboard.press("Enter")  # nothing typed: nothing saved, the line says how to accept
    message_says(page, "press a to accept the model's 3")
    assert shown_key(page) == first.key and "human_count" not in seeded.image(first)

    page.keyboard.press("4")
    assert page.inner_text(".panel output.pending") == "4"
    page.keyboard.press("Enter")
    wait_for_photo(page, second.key)  # no page reload: the next panel was preloaded
    assert "BIN-1: saved count 4" in page.inner_text("#message")

    page.keyboard.press("7")  # outside 0..5: refused on the page, nothing written
    message_says(page, "outside 0..5")
    assert page.inner_text(".panel output.pending") == "–"
    assert shown_key(page) == second.key and "human_count" not in seeded.image(second)

    page.keyboard.press("+")
    assert page.inner_text(".panel output.pending") == ">5"
    page.keyboard.press("Escape")
    page.keyboard.press("5")
    page.keyboard.press("Enter")
    wait_for_photo(page, "BIN-3/20261126T090000Z-cam1.jpg")
    assert page.inner_text("#left") == "2" and page.inner_text("#saved") == "2"
    page.keyboard.press("s")  # a skip moves on and leaves the photo to do: "left" stays
    wait_for(page, "document.querySelector('#position').textContent.startsWith('4 /')")
    assert page.inner_text("#left") == "2"
    page.keyboard.press("ArrowLeft")

    page.keyboard.press("ArrowLeft")  # back to the saved photo: it shows its label now
    wait_for_photo(page, second.key)
    assert "labelled 5 by alice" in page.inner_text(".panel .label")
    page.keyboard.press("ArrowRight")
    wait_for_photo(page, "BIN-3/20261126T090000Z-cam1.jpg")
    page.keyboard.press("5")  # pending, not saved: what the screenshot shows

    first_record, second_record = seeded.image(first), seeded.image(second)
    assert (first_record["human_count"], first_record["reviewer"]) == (4, "alice")
    assert first_record["label_source"] == "typed"
    assert (second_record["human_count"], second_record["replaced_count"]) == (5, 4)
    assert seeded.latest("BIN-1")["count"] == 5  # its newest photo
    events = seeded.events()
    assert [(e["detail"]["image"]["key"], e["detail"]["count"]) for e in events] == [
        (first.key, 4),
        (second.key, 5),
    ]
    assert [e["detail"]["latest_updated"] for e in events] == [False, True]
    assert "human_count" not in seeded.image(seeded.seeded[6])  # the pending count was not saved

    # The chart as drawn: one baseline, one track height, heights as the percentages say, the
    # model's answer (2, 88 %) outlined and as tall as its number, not lifted or shortened.
    columns = chart_geometry(page)
    assert len(columns) == 6
    assert max(c["bottom"] for c in columns) - min(c["bottom"] for c in columns) < 0.5
    assert max(c["trackBottom"] for c in columns) - min(c["trackBottom"] for c in columns) < 0.5
    assert len({round(c["track"], 1) for c in columns}) == 1
    assert len({round(c["width"], 1) for c in columns}) == 1
    probabilities = [float(p) for p in seeded.image(seeded.seeded[6])["probabilities"]]
    for column, p in zip(columns, probabilities, strict=True):
        assert column["height"] == pytest.approx(p * column["track"], abs=1.0)
        assert column["pct"] == f"{round(p * 100)}%"
    assert [c["model"] for c in columns] == [k == 2 for k in range(6)]
    assert columns[2]["outline"] != columns[0]["outline"]
    assert columns[2]["height"] == max(c["height"] for c in columns)

    shot = tmp_path / "review-console.png"
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000
    if os.environ.get("REVIEW_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["REVIEW_SCREENSHOT"])


def bincount(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """`bincount ARGV... --stack <the moto stack>` in this process (moto answers it here too)."""
    capsys.readouterr()
    code = main([*argv, "--stack", STACK_NAME, "--region", REGION])
    return code, capsys.readouterr().out


def test_accepting_is_its_own_key_and_bincount_history_shows_it(
    seeded: ReviewStack, console_url: str, page: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    photo = seeded.seeded[6]
    page.goto(console_url + "/?bin=BIN-3")  # newest photo first: the model said 2
    wait_for_photo(page, photo.key)
    page.keyboard.press("Enter")
    message_says(page, "press a to accept the model's 2")
    assert "human_count" not in seeded.image(photo)

    page.keyboard.press("a")
    message_says(page, "BIN-3: accepted the model's count 2")
    record = seeded.image(photo)
    assert (record["human_count"], record["label_source"], record["reviewer"]) == (2, "accepted", "alice")

    code, out = bincount(capsys, "history", "BIN-3", "--json")
    rows = json.loads(out)
    assert code == 0 and [row["label"] for row in rows] == [None, None, "2"]
    assert (rows[-1]["label_source"], rows[-1]["reviewer"]) == ("accepted", "alice")
    code, out = bincount(capsys, "history", "BIN-3", "--reviewed", "yes")
    line = next(line for line in out.splitlines() if photo.key.rsplit("/", 1)[1] in line)
    assert code == 0 and "alice, accepted" in line and record["reviewed_at"] in line
    seeded.deliver()  # the counts table's stream: the corrections function moves the bin's LATEST
    code, out = bincount(capsys, "bins", "--reviewed", "yes", "--json")
    assert [(row["bin_id"], row["count_source"], row["label_source"]) for row in json.loads(out)] == [
        ("BIN-3", "person", "accepted")
    ]


def test_mouse_saves_what_was_clicked(seeded: ReviewStack, console_url: str, page: Any) -> None:
    page.goto(console_url + "/?bin=BIN-4")
    wait_for_photo(page, "BIN-4/20261126T090000Z-cam1.jpg")
    page.click(".choice[data-count='0']")
    page.click("button.save")
    message_says(page, "saved count 0")
    assert seeded.image(seeded.seeded[-1])["human_count"] == 0


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
    message_says(page, "bob already saved 1")
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
