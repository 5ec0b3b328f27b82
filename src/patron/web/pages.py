"""The Jinja2 environment of a package's pages: its own ``templates_html`` first, then the
shared layout (``page.html``) of ``patron.web``. Autoescaped, strict about undefined
names, so a page can neither inject markup nor silently render a typo as nothing."""

from __future__ import annotations

import jinja2


def environment(package: str) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.ChoiceLoader(
            [
                jinja2.PackageLoader(package, "templates_html"),
                jinja2.PackageLoader("patron.web", "templates"),
            ]
        ),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
