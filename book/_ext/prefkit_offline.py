"""Sphinx extension for the prefkit site: switch sphinx-thebe off.

Jupyter Book 1 always loads sphinx-thebe (live code cells through Binder). The site has no Binder, and sphinx-thebe
adds, twice, an inline script declaring ``const THEBE_JS_URL = "https://unpkg.com/..."`` (the second declaration is
a script error on every page, and the URL points outside the site) plus a Binder configuration block. This removes
its listeners and its script and stylesheet; nothing else changes.
"""


def _unhook_thebe(app):
    for event in ("env-before-read-docs", "doctree-resolved"):
        app.events.listeners[event] = [
            lst for lst in app.events.listeners.get(event, [])
            if getattr(lst.handler, "__module__", "") != "sphinx_thebe"
        ]


def _drop_thebe_assets(app, pagename, templatename, context, doctree):
    for key in ("script_files", "css_files"):
        if context.get(key):
            context[key] = [a for a in context[key]
                            if not str(getattr(a, "filename", a) or "").rsplit("/", 1)[-1].startswith("sphinx-thebe.")
                            and "THEBE_JS_URL" not in (getattr(a, "attributes", {}).get("body") or "")]


def setup(app):
    app.connect("builder-inited", _unhook_thebe)
    app.connect("html-page-context", _drop_thebe_assets, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
