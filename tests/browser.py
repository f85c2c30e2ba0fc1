"""Render a local HTML file in headless Chromium (Debian's, through Playwright) and report on it.

The pages linewatch writes must be self-contained, so a render records everything that would show
a mistake: console errors and warnings, uncaught page errors, every request other than the page
itself (there must be none: no font, image, script or favicon fetched), and failed requests. It
also saves a screenshot (screen and print media) and a PDF under the artifacts dir, for a person
to look at: ``$LINEWATCH_TEST_ARTIFACTS`` or ``tests/artifacts/``.

Playwright never downloads a browser here: it drives ``/usr/bin/chromium`` (apt-get install
chromium). Without it, or without the playwright package, :func:`unavailable` says why and the
tests skip with that reason.

    with Browser() as b:
        r = b.render(path, "region")
        assert not r.problems()
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
# From shared/TESTBED.md. --headless and the profile dir are Playwright's own business (it passes
# --headless and a fresh temp --user-data-dir itself, and refuses the latter in args).
# Even with those, Chromium looks up Google's hosts at start (update.googleapis.com,
# accounts.google.com: seen in a capture of the suite): every name resolves to nothing, so no test
# run ever sends a query or a connection out; the pages are local files and need no name.
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-pings", "--disable-domain-reliability", "--host-resolver-rules=MAP * ~NOTFOUND"]
REPO = Path(__file__).resolve().parent.parent

# Only ever the system browser: never let Playwright fetch one of its own.
os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")


def unavailable() -> str | None:
    """Why pages cannot be rendered here, or None when they can."""
    if not os.access(CHROMIUM, os.X_OK):
        return f"Chromium is not installed ({CHROMIUM} missing): apt-get install chromium"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Python Playwright is not installed: pip install playwright"
    return None


def artifacts_dir() -> Path:
    d = Path(os.environ.get("LINEWATCH_TEST_ARTIFACTS") or REPO / "tests" / "artifacts")
    d.mkdir(parents=True, exist_ok=True)
    return d


@dataclass
class Rendered:
    """What one render saw. ``requests`` are all requests except the page's own document."""

    url: str
    console_errors: list[str] = field(default_factory=list)
    console_warnings: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    text: str = ""
    screenshot: Path | None = None
    print_screenshot: Path | None = None
    pdf: Path | None = None

    def problems(self) -> list[str]:
        """Everything a self-contained, script-free page must not produce (empty when clean)."""
        return ([f"console error: {m}" for m in self.console_errors]
                + [f"console warning: {m}" for m in self.console_warnings]
                + [f"page error: {m}" for m in self.page_errors]
                + [f"request: {u}" for u in self.requests]
                + [f"failed request: {u}" for u in self.failed_requests])


class Browser:
    """One headless Chromium for many renders (launching costs about a second)."""

    def __init__(self, width: int = 1280, height: int = 900):
        self.width, self.height = width, height
        self._pw = self._browser = None

    def __enter__(self) -> Browser:
        from playwright.sync_api import sync_playwright
        self._pw = sync_playwright().start()
        try:
            self._browser = self._pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                                     args=FLAGS)
        except Exception:
            self._pw.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        if self._browser is not None:
            self._browser.close()
        if self._pw is not None:
            self._pw.stop()

    def render(self, path: Path, name: str, *, print_media: bool = True) -> Rendered:
        """Open ``path`` (file://), wait for load, collect problems and the visible text, and
        save ``<name>.png`` (full page), ``<name>-print.png`` and ``<name>.pdf`` when
        ``print_media``."""
        url = Path(path).resolve().as_uri()
        r = Rendered(url)
        context = self._browser.new_context(viewport={"width": self.width, "height": self.height},
                                            java_script_enabled=True)
        page = context.new_page()

        def on_console(msg) -> None:
            if msg.type == "error":
                r.console_errors.append(msg.text)
            elif msg.type == "warning":
                r.console_warnings.append(msg.text)

        def on_request(req) -> None:
            if req.url != url:
                r.requests.append(req.url)

        page.on("console", on_console)
        page.on("pageerror", lambda err: r.page_errors.append(str(err)))
        page.on("request", on_request)
        page.on("requestfailed", lambda req: r.failed_requests.append(
            f"{req.url} ({req.failure})"))
        try:
            page.goto(url, wait_until="load")
            r.text = page.inner_text("body")
            out = artifacts_dir()
            r.screenshot = out / f"{name}.png"
            page.screenshot(path=str(r.screenshot), full_page=True)
            if print_media:
                page.emulate_media(media="print")
                r.print_screenshot = out / f"{name}-print.png"
                page.screenshot(path=str(r.print_screenshot), full_page=True)
                r.pdf = out / f"{name}.pdf"
                page.pdf(path=str(r.pdf), print_background=True, prefer_css_page_size=True)
        finally:
            context.close()
        return r
