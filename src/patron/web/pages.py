"""The Jinja2 environment of a package's pages: its own ``templates_html`` first, then the
shared layout (``page.html``) of ``patron.web``. Autoescaped, strict about undefined
names, so a page can neither inject markup nor silently render a typo as nothing."""

from __future__ import annotations

from typing import Annotated

import jinja2
from fastapi import Query

# The page language asked for in the URL (`?lang=en|zh`); anything else falls back.
LangQuery = Annotated[str | None, Query(max_length=8)]


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
