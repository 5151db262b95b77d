"""The course website (book/, built by ``./dev book`` into book/_build/html) opened in a real headless browser.

Playwright for Python drives Debian's Chromium (``apt-get install chromium``; Playwright's own browser download is
not needed). The site is served from 127.0.0.1 by a local HTTP server, and every request for anything outside it
is blocked and reported: the site must render offline (MathJax is bundled). For each chapter page, the intro and
the tour page, the test checks that the page loads without a script error or a failed request; that its equations
are typeset by MathJax (every math element holds an ``mjx-container``, no ``mjx-merror``, and no raw ``$$`` or
``\\frac`` left in the visible text); that every image loads (``naturalWidth > 0``) and each figure of the notebook
is there; that the chapter navigation lists every chapter; and that every internal link resolves (the page exists
and so does the ``#anchor``). It saves a screenshot of each page in book/_build/screenshots/: NAME.png (the first
screen) and NAME-full.jpg (the whole page).

``.ci/book`` (``./dev book``, ``./dev test``, CI) installs what this needs, builds the site and runs this file with
PREFKIT_BOOK_REQUIRED=1: then a missing browser or site is a failure. Run on its own without Playwright or Chromium,
it skips and says why; with them, it builds the site first if it is missing or older than a notebook.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlparse

import pytest

ROOT = Path(__file__).resolve().parent.parent
HTML = ROOT / "book" / "_build" / "html"
SHOTS = ROOT / "book" / "_build" / "screenshots"
NOTEBOOKS = sorted(ROOT.glob("notebooks/[0-9][0-9]_*.ipynb"))
PAGES = ["intro.html", *[f"{nb.stem}.html" for nb in NOTEBOOKS], "tour.html"]
REQUIRED = os.environ.get("PREFKIT_BOOK_REQUIRED") == "1"
# Raw TeX in the text a reader sees (code cells and typeset math are removed first): a `$$`, or a control word.
RAW_TEX = re.compile(r"\$\$|\\(?:frac|begin|end|pi|beta|mathrm|sum|log|left|right|sigma|theta|cdot|le|ge)\b|\\[(\[]")


def _unavailable(reason: str) -> None:
    if REQUIRED:
        pytest.fail(f"{reason}. PREFKIT_BOOK_REQUIRED=1: .ci/book must have installed it")
    pytest.skip(f"{reason}; `./dev book` installs it, builds the site and runs this test")


def _chromium() -> str | None:
    """Debian's Chromium (or $PREFKIT_CHROMIUM); None lets Playwright use a browser it downloaded itself."""
    for cand in [os.environ.get("PREFKIT_CHROMIUM"), "/usr/lib/chromium/chromium", shutil.which("chromium"),
                 shutil.which("chromium-browser"), shutil.which("google-chrome")]:
        if cand and Path(cand).is_file() and os.access(cand, os.X_OK):
            return cand
    return None


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("Playwright for Python is not installed (requirements-book.txt)")
    exe = _chromium()
    with sync_playwright() as p:
        try:
            b = p.chromium.launch(executable_path=exe, headless=True)
        except Exception as e:  # no browser at all, or one that does not start
            _unavailable(f"no headless Chromium could be started ({exe or 'Playwright default'}: "
                         f"{str(e).splitlines()[0]}); install it with `apt-get install chromium`")
        yield b
        b.close()


def _stale() -> list[str]:
    """Why the built site does not match notebooks/ (book/build.py writes book/_build/manifest.json last)."""
    manifest = HTML.parent / "manifest.json"
    if not manifest.is_file():
        return [f"{manifest} missing (no complete build)"]
    built = json.loads(manifest.read_text(encoding="utf-8"))
    why = [f"{nb.name} changed" for nb in NOTEBOOKS
           if built.get(nb.name) != hashlib.sha256(nb.read_bytes()).hexdigest()]
    return why + [f"{p} missing" for p in PAGES if not (HTML / p).is_file()]


@pytest.fixture(scope="module")
def site(browser) -> Path:
    """The built site. Run on its own, the test (re)builds it when it is missing or older than a notebook."""
    if REQUIRED:  # .ci/book has just built it; notebooks edited since then are checked next time
        missing = [p for p in PAGES if not (HTML / p).is_file()]
        assert not missing, f"pages missing from {HTML}: {missing} (.ci/book builds the site before the test)"
    elif _stale():
        try:
            import jupyter_book  # noqa: F401
        except ImportError:
            _unavailable("Jupyter Book is not installed (requirements-book.txt), so the site cannot be built")
        r = subprocess.run([sys.executable, str(ROOT / "book" / "build.py")], cwd=ROOT, capture_output=True,
                           text=True)
        assert r.returncode == 0, f"book/build.py failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return HTML


@pytest.fixture(scope="module")
def server(site):
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(site)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()


class _Ids(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        for k, v in attrs:
            if k in ("id", "name") and v:
                self.ids.add(v)


@functools.cache
def _ids(path: Path) -> frozenset[str]:
    p = _Ids()
    p.feed(path.read_text(encoding="utf-8", errors="replace"))
    return frozenset(p.ids)


def _notebook(page: str) -> dict | None:
    """The notebook the page was built from (the staged copy: notebooks/ may have changed since)."""
    nb = HTML.parent / "src" / page.replace(".html", ".ipynb")
    return json.loads(nb.read_text(encoding="utf-8")) if nb.is_file() else None


def _figures(nb: dict) -> int:
    """Images among the notebook's committed outputs (what the page must show)."""
    return sum(1 for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])
               if any(k.startswith("image/") for k in o.get("data", {})))


def _has_math(nb: dict) -> bool:
    return any("$" in "".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")


VISIBLE_TEXT_JS = """() => {
  const main = document.querySelector('main') || document.body;
  const copy = main.cloneNode(true);
  copy.querySelectorAll('pre, code, script, style, textarea, mjx-container, .highlight, .MathJax')
      .forEach(e => e.remove());
  return copy.textContent;
}"""

IMAGES_JS = """() => Array.from(document.images).map(i => ({
  src: i.currentSrc || i.src, ok: i.complete && i.naturalWidth > 0, w: i.naturalWidth,
  figure: !!i.closest('.cell_output, .output')}))"""


@pytest.mark.parametrize("name", PAGES)
def test_page_in_browser(name, browser, server):
    SHOTS.mkdir(parents=True, exist_ok=True)
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    page = ctx.new_page()
    external, bad, errors = [], [], []

    def route(r):
        url = r.request.url
        if url.startswith(server) or url.startswith(("data:", "blob:")):
            r.continue_()
        else:  # the site must not need the network; nothing leaves this machine
            external.append(url)
            r.abort()

    page.route("**/*", route)
    page.on("response", lambda resp: resp.status >= 400 and bad.append(f"{resp.status} {resp.url}"))
    page.on("requestfailed", lambda req: req.url.startswith(server) and bad.append(f"failed {req.url}"))
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        resp = page.goto(server + name, wait_until="load")
        assert resp is not None and resp.ok, f"{name}: HTTP {resp and resp.status}"

        # Equations: MathJax has typeset every math element, with no error.
        n_math = page.locator(".math").count()
        if n_math:
            page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise",
                                   timeout=30_000)
            page.evaluate("() => MathJax.startup.promise.then(() => true)")
            page.wait_for_function(
                "() => Array.from(document.querySelectorAll('.math')).every(e => e.querySelector('mjx-container'))",
                timeout=30_000)
        typeset = page.locator(".math mjx-container").count()
        assert typeset >= n_math, f"{name}: {n_math - typeset} of {n_math} equations not typeset by MathJax"
        merrors = page.locator("mjx-merror").evaluate_all("els => els.map(e => e.getAttribute('data-mjx-error'))")
        assert not merrors, f"{name}: MathJax could not typeset: {merrors[:5]}"
        nb = _notebook(name)
        if nb is not None and _has_math(nb):
            assert n_math > 0, f"{name}: the notebook has equations ($...$) but the page has no math elements"
        raw = sorted({m.group(0) for m in RAW_TEX.finditer(page.evaluate(VISIBLE_TEXT_JS))})
        assert not raw, f"{name}: raw TeX left in the text a reader sees: {raw}"

        # Images: every one loads; every figure of the notebook is on the page.
        page.evaluate("() => document.querySelectorAll('img[loading=lazy]').forEach(i => i.loading = 'eager')")
        page.wait_for_function("() => Array.from(document.images).every(i => i.complete)", timeout=30_000)
        images = page.evaluate(IMAGES_JS)
        broken = [i["src"] for i in images if not i["ok"]]
        assert not broken, f"{name}: images that did not load: {broken}"
        if nb is not None:
            shown = sum(i["figure"] for i in images)
            assert shown == _figures(nb), f"{name}: {shown} figures shown, the notebook has {_figures(nb)}"

        # Navigation: the sidebar lists every chapter and the tour; previous/next links.
        nav = {urlparse(h).path.rsplit("/", 1)[-1] for h in page.locator(".bd-sidebar-primary nav a[href]")
               .evaluate_all("els => els.map(a => a.href)")}
        missing = [p for p in PAGES[1:] if p not in nav]
        assert not missing, f"{name}: the chapter navigation lacks {missing}"
        if name != "intro.html":
            assert page.locator(".prev-next-area a").count() >= 1, f"{name}: no previous/next links"

        # Internal links: the target page exists and so does its #anchor.
        hrefs = page.locator("a[href]").evaluate_all("els => els.map(a => a.href)")
        dead = []
        for href in sorted(set(hrefs)):
            if not href.startswith(server):
                continue
            url, frag = urldefrag(href)
            rel = unquote(urlparse(url).path).lstrip("/") or "index.html"
            target = HTML / rel
            if target.is_dir():
                target = target / "index.html"
            if not target.is_file():
                dead.append(href)
            elif frag and target.suffix == ".html" and unquote(frag) not in _ids(target):
                dead.append(href)
        assert not dead, f"{name}: internal links that do not resolve: {dead}"

        assert not external, f"{name}: the page asked for outside resources (blocked): {external}"
        assert not bad, f"{name}: failed requests: {bad}"
        assert not errors, f"{name}: script errors: {errors}"
    finally:
        stem = name.removesuffix(".html")
        page.screenshot(path=str(SHOTS / f"{stem}.png"))
        page.screenshot(path=str(SHOTS / f"{stem}-full.jpg"), full_page=True, quality=70)  # JPEG: 2x faster
        ctx.close()


def test_no_external_resources_in_html(site):
    """No page loads a script, stylesheet, font or image from outside the site (links to papers are fine)."""
    pattern = re.compile(r"<(?:script|img|iframe|source)\b[^>]*\bsrc=[\"'](?:https?:)?//[^\"']+"
                         r"|<link\b[^>]*\bhref=[\"'](?:https?:)?//[^\"']+[^>]*>", re.I)
    found = {}
    for f in sorted(site.rglob("*.html")):
        hits = [m for m in pattern.findall(f.read_text(encoding="utf-8", errors="replace"))
                if not re.search(r"rel=[\"'](?:canonical|alternate)", m)]
        if hits:
            found[str(f.relative_to(site))] = hits[:3]
    assert not found, f"pages that load outside resources: {found}"
    mathjax = site / "_static" / "mathjax" / "tex-chtml.js"
    assert mathjax.is_file(), f"MathJax is not bundled ({mathjax} missing)"
