"""A browser tab that keeps a list of everything that went wrong while a test used it.

Every console error (Chromium reports each Content-Security-Policy violation there), uncaught
script error, failed response (4xx/5xx, a page or any of its stylesheets, scripts and images)
and request that got no answer at all lands in `problems`, except the status a test asked for
(`visit(..., status=404)`, or a form answered with `with tab.answering(422): ...click()`:
the error page itself, and Chromium's console line about it).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import ConsoleMessage, Page, Request, Response

from .live_server import LiveServer


class Tab:
    def __init__(self, page: Page, server: LiveServer):
        self.page = page
        self.server = server
        self.problems: list[str] = []
        self._expected: dict[str, int] = {}  # url -> the error status a test asked for
        self._answering: int | None = None  # the status the next page may answer
        page.on("console", self._on_console)
        page.on("pageerror", self._on_page_error)
        page.on("response", self._on_response)
        page.on("requestfailed", self._on_request_failed)

    def url(self, slug: str, path: str = "/") -> str:
        return self.server.url(slug, path)

    def visit(self, slug: str, path: str = "/", status: int = 200) -> Response:
        """Open a shop page as a buyer would type its address; it must answer `status`."""
        url = self.url(slug, path)
        if status >= 400:
            self._expected[url] = status
        response = self.page.goto(url)
        assert response is not None, url
        assert response.status == status, (url, response.status, self.page.content()[:3000])
        return response

    @contextmanager
    def answering(self, status: int) -> Iterator[None]:
        """The page that loads within the block (a form a test submits with a mistake) must
        answer `status`: it counts as a problem neither then nor when it answers otherwise,
        which the test checks on the page itself."""
        self._answering = status
        try:
            with self.page.expect_response(self._is_page_response) as answer:
                yield
            assert answer.value.status == status, (answer.value.url, answer.value.status)
        finally:
            self._answering = None

    def _is_page_response(self, response: Response) -> bool:
        return (response.request.is_navigation_request()
                and response.request.frame == self.page.main_frame)

    def screenshot(self, folder: Path, name: str) -> Path:
        path = folder / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def html_lang(self) -> str:
        return self.page.locator("html").get_attribute("lang") or ""

    def css_var(self, name: str) -> str:
        """The value of a CSS custom property on <html>, as the page computes it."""
        return self.page.evaluate(
            "name => getComputedStyle(document.documentElement).getPropertyValue(name).trim()",
            name)

    def stylesheets(self) -> list[str]:
        return self.page.eval_on_selector_all("link[rel=stylesheet]",
                                              "links => links.map(l => l.href)")

    def assert_clean(self) -> None:
        assert self.problems == [], "\n".join(self.problems)

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        where = message.location.get("url", "")
        if message.text.startswith("Failed to load resource") and where in self._expected:
            return
        self.problems.append(f"console error on {where or self.page.url}: {message.text}")

    def _on_page_error(self, error) -> None:
        self.problems.append(f"script error on {self.page.url}: {error}")

    def _on_response(self, response: Response) -> None:
        if self._answering == response.status and self._is_page_response(response):
            self._expected[response.url] = response.status
        if response.status < 400 or self._expected.get(response.url) == response.status:
            return
        self.problems.append(f"HTTP {response.status} for {response.request.method} "
                             f"{response.url}")

    def _on_request_failed(self, request: Request) -> None:
        # ERR_ABORTED: the page moved on (a click, a refresh) before the request was answered.
        if request.failure == "net::ERR_ABORTED":
            return
        self.problems.append(f"no answer ({request.failure}) for {request.method} {request.url}")
