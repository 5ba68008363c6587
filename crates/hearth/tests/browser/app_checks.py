"""The web app in a real headless Chromium (Debian's), driven with Playwright, against a real
`hearth serve --accounts` with SmolLM2. Run by crates/hearth/tests/webapp_browser.rs:

    app_checks.py HEARTH_BIN MODEL SCREENSHOT_DIR CHROMIUM

with HEARTH_MODELS, OLLAMA_MODELS and HEARTH_HOME set for the server. The script starts and
restarts the server itself. Every check raises on failure; screenshots of the main screens go to
SCREENSHOT_DIR.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

from playwright.sync_api import expect, sync_playwright

HEARTH, MODEL, SHOTS, CHROMIUM = sys.argv[1:5]
os.makedirs(SHOTS, exist_ok=True)
PASSWORD = "correct horse battery"
QUESTION = "Write a short poem about a hearth fire in winter."
TIMEOUT = 60_000
# Assertions wait as long as actions: an answer may run to its context (700 tokens below), which
# on a busy 2-core machine takes longer than Playwright's default 5 s.
expect.set_options(timeout=TIMEOUT)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, port):
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = open(os.path.join(SHOTS, "server.log"), "ab")
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            [HEARTH, "serve", "--accounts", "--host", f"127.0.0.1:{self.port}"],
            stdout=self.log, stderr=self.log, stdin=subprocess.DEVNULL)
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise AssertionError("hearth serve did not start")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)


def shot(page, name):
    page.screenshot(path=os.path.join(SHOTS, f"{name}.png"), full_page=False)


def sign_up(page, url, username):
    page.goto(url + "/")
    page.locator("#signup-username").fill(username)
    page.locator("#signup-password").fill(PASSWORD)
    page.get_by_test_id("signup").click()


def log_in(page, url, username):
    page.goto(url + "/#/login")
    page.locator("#login-username").fill(username)
    page.locator("#login-password").fill(PASSWORD)
    page.get_by_test_id("login").click()


def main():
    server = Server(free_port())
    server.start()
    url = server.url
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        ada_ctx = browser.new_context(viewport={"width": 1280, "height": 800})
        ada = ada_ctx.new_page()
        ada.set_default_timeout(TIMEOUT)
        errors = []
        ada.on("pageerror", lambda e: errors.append(str(e)))

        # The first account is the admin.
        ada.goto(url + "/")
        expect(ada.locator("#signup-username")).to_be_visible()
        shot(ada, "01-sign-up")
        sign_up(ada, url, "ada")
        expect(ada.locator("#prompt")).to_be_visible()

        # Chat with the real model and see the answer stream in.
        expect(ada.locator("#model option").first).to_be_attached()
        name = ada.locator("#model option").evaluate_all(
            "(os, m) => os.map(o => o.value).find(v => v === m || v.startsWith(m + ':'))", MODEL)
        assert name, "the model picker does not list " + MODEL
        ada.locator("#model").select_option(name)
        # A small context keeps the answer short (a small model can go on for ever).
        ada.get_by_test_id("chat-settings").click()
        ada.locator("#num_ctx").fill("256")
        ada.get_by_test_id("save-settings").click()
        ada.locator("#prompt").fill(QUESTION)
        ada.get_by_test_id("send").click()
        answer = ada.locator('.message[data-role="assistant"]').last
        lengths = set()
        deadline = time.time() + 120
        while time.time() < deadline:
            status = answer.get_attribute("data-status") if answer.count() else None
            if answer.count():
                lengths.add(len(answer.locator(".content").inner_text()))
            if status == "done":
                break
            time.sleep(0.05)
        if answer.get_attribute("data-status") != "done":
            shot(ada, "failure")
            raise AssertionError("the answer did not finish: " + ada.locator("main").inner_html()[:3000])
        text = answer.locator(".content").inner_text().strip()
        assert text, "the answer is empty"
        grown = sorted(x for x in lengths if 0 < x < len(text))
        assert grown, f"the answer did not stream in (lengths seen: {sorted(lengths)})"
        expect(answer.locator(".stats")).to_contain_text("tok/s")
        shot(ada, "02-chat")
        chat_id = ada.evaluate("location.hash").split("/c/")[1]

        # Restart the server: the chat is still there.
        server.stop()
        server.start()
        ada.goto(url + "/")
        item = ada.locator(f'[data-testid="chat-item"][data-chat-id="{chat_id}"]')
        expect(item).to_be_visible()
        item.click()
        expect(ada.locator('.message[data-role="user"]').first).to_contain_text("hearth fire")
        expect(ada.locator('.message[data-role="assistant"] .content').first).to_have_text(text, use_inner_text=True)

        # Search it.
        ada.locator("#search").fill("hearth fire")
        hit = ada.get_by_test_id("search-hit").first
        expect(hit).to_be_visible()
        hit.click()
        expect(ada).to_have_url(f"{url}/#/c/{chat_id}")
        shot(ada, "03-search")

        # Export it, as Markdown and as JSON.
        with ada.expect_download() as dl:
            ada.get_by_test_id("export-md").click()
        md = open(dl.value.path(), encoding="utf-8").read()
        assert QUESTION in md and text.splitlines()[0].strip() in md, md
        with ada.expect_download() as dl:
            ada.get_by_test_id("export-json").click()
        exported = json.load(open(dl.value.path(), encoding="utf-8"))
        assert exported["messages"][0]["content"] == QUESTION, exported

        # A second user signs up, waits, is approved, and cannot open the first user's chat.
        bob_ctx = browser.new_context(viewport={"width": 1280, "height": 800})
        bob = bob_ctx.new_page()
        bob.set_default_timeout(TIMEOUT)
        sign_up(bob, url, "bob")
        expect(bob.get_by_test_id("pending")).to_be_visible()
        shot(bob, "04-pending")
        ada.goto(url + "/#/settings")
        row = ada.locator('[data-testid="user-row"][data-username="bob"]')
        expect(row).to_be_visible()
        shot(ada, "05-settings-users")
        row.get_by_test_id("approve").click()
        expect(row).not_to_contain_text("pending")
        log_in(bob, url, "bob")
        expect(bob.locator("#prompt")).to_be_visible()
        bob.goto(f"{url}/#/c/{chat_id}")
        expect(bob.get_by_test_id("not-found")).to_be_visible()
        status = bob.evaluate(
            "async (id) => (await fetch('/app/api/chats/' + id)).status", chat_id)
        assert status in (403, 404), status
        assert bob.locator(".message").count() == 0
        assert "hearth fire" not in bob.content()
        shot(bob, "06-not-yours")

        # Hostile markdown renders inert.
        hostile = {
            "title": "<img src=x onerror=window.__xss=1>",
            "model": MODEL,
            "messages": [
                {"role": "user", "content": "show me html"},
                {"role": "assistant", "content":
                    "Here: <img src=x onerror=\"window.__xss=1\"> and <script>window.__xss=3</script>\n\n"
                    "[click me](javascript:window.__xss=2) and [also](JaVaScRiPt:window.__xss=4)\n\n"
                    "![pic](javascript:window.__xss=5)\n\n```html\n<img src=x onerror=window.__xss=6>\n```"},
            ],
        }
        hostile_file = os.path.join(SHOTS, "hostile-chat.json")
        with open(hostile_file, "w", encoding="utf-8") as f:
            json.dump(hostile, f)
        ada.goto(f"{url}/#/c/{chat_id}")
        ada.locator("#import-file").set_input_files(hostile_file)
        expect(ada).not_to_have_url(f"{url}/#/c/{chat_id}")
        expect(ada.locator('.message[data-role="assistant"]')).to_have_count(1)
        imported = ada.evaluate("location.hash").split("/c/")[1]
        content = ada.locator('.message[data-role="assistant"] .content').first
        expect(content).to_contain_text("<img src=x onerror=")
        assert content.locator("img").count() == 0
        assert ada.locator("script:not([src])").count() == 0
        for a in content.locator("a").all():
            href = (a.get_attribute("href") or "").strip().lower()
            assert href.startswith(("http:", "https:", "mailto:", "#")), href
        ada.get_by_text("click me").click()
        ada.get_by_text("also").first.click()
        time.sleep(0.5)
        assert ada.evaluate("window.__xss") is None, "a script ran"
        title = ada.locator(f'[data-testid="chat-item"][data-chat-id="{imported}"]')
        expect(title).to_contain_text("<img src=x")
        shot(ada, "07-hostile-markdown")

        # Documents: a collection, an upload with progress, an answer with its sources.
        ada.goto(f"{url}/#/documents")
        ada.locator("#collection-name").fill("Handbook")
        ada.get_by_test_id("new-collection").click()
        handbook = os.path.join(SHOTS, "handbook.md")
        with open(handbook, "w", encoding="utf-8") as f:
            f.write("# Parking\n\nThe staff car park behind building C opens at 6:30 and "
                    "closes at 22:00. Bicycle racks are next to the north entrance.\n\n"
                    "# Canteen\n\nLunch is served from 11:45 to 14:00; the soup of the day "
                    "is on the board by the door.\n")
        ada.locator("#upload-file").set_input_files(handbook)
        doc = ada.locator('[data-testid="document-row"]').first
        expect(doc).to_have_attribute("data-status", "ready")
        shot(ada, "13-documents")
        ada.get_by_test_id("new-chat").click()
        ada.locator("#model").select_option(name)
        ada.get_by_test_id("chat-settings").click()
        # A small context bounds the answer: a sampled answer from a small model may ramble until
        # the context is full, which takes a while when the machine is busy.
        ada.locator("#num_ctx").fill("512")
        ada.get_by_test_id("save-settings").click()
        ada.get_by_test_id("attach").click()
        ada.locator("#attach-panel input[type=checkbox]").first.check()
        ada.get_by_test_id("attach-close").click()
        ada.locator("#prompt").fill("When does the staff car park open?")
        ada.get_by_test_id("send").click()
        answer = ada.locator('.message[data-role="assistant"]').last
        expect(answer).to_have_attribute("data-status", "done", timeout=2 * TIMEOUT)
        source = answer.get_by_test_id("source").first
        if not source.count():
            shot(ada, "failure")
            saved = ada.evaluate("""async () => {
                const id = location.hash.split('/c/')[1];
                return await (await fetch('/app/api/chats/' + id)).json(); }""")
            raise AssertionError("the answer has no sources: " + json.dumps(saved)[:3000])
        expect(source).to_contain_text("handbook.md")
        source.click()
        expect(ada.get_by_test_id("passage")).to_contain_text("6:30")
        shot(ada, "14-sources")
        ada.keyboard.press("Escape")

        # The other screens.
        for route, name in [("#/models", "08-models"), ("#/machine", "09-machine"),
                            ("#/usage", "10-usage")]:
            ada.goto(f"{url}/{route}")
            ada.wait_for_load_state("networkidle")
            time.sleep(0.5)
            shot(ada, name)
        ada.goto(f"{url}/#/c/{chat_id}")
        ada.get_by_test_id("theme").click()
        time.sleep(0.3)
        shot(ada, "11-chat-other-theme")
        phone = browser.new_context(viewport={"width": 390, "height": 844},
                                    storage_state=ada_ctx.storage_state()).new_page()
        phone.goto(f"{url}/#/c/{chat_id}")
        expect(phone.locator('.message[data-role="assistant"]').first).to_be_visible()
        shot(phone, "12-phone")
        assert not errors, f"the page threw: {errors}"
        browser.close()
    server.stop()
    print("all browser checks passed")


if __name__ == "__main__":
    main()
