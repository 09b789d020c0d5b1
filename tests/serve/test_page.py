"""The chat page in a real browser: Debian's /usr/bin/chromium driven by Playwright (no browser
download). Type, watch the reply stream in, stop it, reset; the screenshot lands in
docs/chat-page.png, which the README shows."""
import json
import time
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "chat-page.png"


@pytest.fixture
def browser_page(tmp_path):
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(str(tmp_path / "profile"), executable_path=CHROMIUM,
                                                       headless=True, args=FLAGS,
                                                       viewport={"width": 960, "height": 640})
        try:
            yield context.new_page()
        finally:
            context.close()


def _open(page, server, model):
    page.goto(server.url + "/")
    page.wait_for_function("document.getElementById('status').textContent.includes('model: ')")
    assert page.text_content("#status") == f"model: {model}"


def _send(page, text):
    page.fill("#input", text)
    page.press("#input", "Enter")


def test_page_streams_stops_and_resets(browser_page, plain_server):
    page = browser_page
    _open(page, plain_server, "tiny-plain")
    page.fill("#system", "You are terse.")
    page.fill("#temperature", "0")
    page.fill("#max_tokens", "1900")
    with page.expect_request("**/v1/chat/completions") as posted:
        _send(page, "Hello there")
    body = json.loads(posted.value.post_data)
    assert body["messages"] == [{"role": "system", "content": "You are terse."},
                                {"role": "user", "content": "Hello there"}]
    assert body["stream"] is True and body["temperature"] == 0 and body["max_tokens"] == 1900
    reply = page.locator(".msg.assistant").last
    page.wait_for_function("document.querySelector('.msg.assistant').textContent.length > 0")
    assert page.get_attribute("body", "data-state") == "streaming" and page.is_enabled("#stop")
    page.click("#stop", timeout=5000)                            # while the reply is still coming
    page.wait_for_function("document.body.dataset.state === 'idle'")
    assert "stopped" in reply.get_attribute("class") and page.is_disabled("#stop") and page.is_enabled("#send")
    shown = reply.text_content()
    h = plain_server.wait_idle(timeout=5)
    assert h["active"] == 0                                      # the aborted stream freed its slot
    time.sleep(0.3)
    assert reply.text_content() == shown                         # nothing more arrives
    full = plain_server.client().chat.completions.create(model="tiny-plain", messages=body["messages"],
                                                         temperature=0, max_tokens=1900)
    assert full.choices[0].message.content.startswith(shown) and len(shown) < len(full.choices[0].message.content)

    page.click("#reset")
    assert page.locator(".msg.user").count() == 0 and page.locator(".msg.assistant").count() == 0
    page.fill("#max_tokens", "5")
    with page.expect_request("**/v1/chat/completions") as posted:
        _send(page, "Again")
    assert [m["content"] for m in json.loads(posted.value.post_data)["messages"]] == ["You are terse.", "Again"]
    page.wait_for_function("document.body.dataset.state === 'idle' && document.querySelector('.msg.assistant')")


def test_page_screenshot_with_a_story(browser_page, stories_server, tmp_path):
    """A finished two-turn chat with stories260K, saved for the README."""
    page = browser_page
    _open(page, stories_server, "stories")
    page.fill("#system", "You tell stories for children.")
    page.fill("#temperature", "0")
    page.fill("#max_tokens", "60")
    for k, text in enumerate(("Tell me a story about a cat.", "And then?"), 1):
        _send(page, text)
        page.wait_for_function(f"document.querySelectorAll('.msg.assistant').length === {k} "
                               "&& document.body.dataset.state === 'idle'")
    replies = page.locator(".msg.assistant").all_text_contents()
    assert len(replies) == 2 and all(len(r) > 20 for r in replies)
    shot = tmp_path / "chat-page.png"
    page.screenshot(path=str(shot), caret="hide", animations="disabled")
    assert shot.stat().st_size > 10_000
    if not SCREENSHOT.exists() or _changed_pixels(shot, SCREENSHOT) > 0.001:
        SCREENSHOT.parent.mkdir(exist_ok=True)               # (anti-aliasing varies by a few pixels
        shot.replace(SCREENSHOT)                             # from run to run: keep the file then)


def _changed_pixels(a: Path, b: Path) -> float:
    """The fraction of pixels that differ between two images (1.0 if their sizes differ)."""
    from PIL import Image, ImageChops
    x, y = Image.open(a).convert("RGB"), Image.open(b).convert("RGB")
    if x.size != y.size:
        return 1.0
    diff = ImageChops.difference(x, y).convert("L").point(lambda v: 255 if v > 16 else 0)
    return diff.histogram()[255] / (x.size[0] * x.size[1])
