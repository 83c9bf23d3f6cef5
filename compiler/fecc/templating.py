"""The one jinja2 environment for every template fecc renders (emitted code, prompts, reports).

Templates live in the repository's top-level ``templates/`` directory, which is the
package ``fecc.templates`` (``compiler/fecc/templates`` links to it; pyproject.toml
ships its files as package data), so a wheel and an editable install resolve the same
files through :func:`template_root` — the only place that knows where they are.

One set of whitespace rules for all of them: ``trim_blocks`` and ``lstrip_blocks``
(a line holding only a block tag leaves nothing behind; a tag that must keep its
newline or indentation says so with ``+%}`` / ``{%+``) and ``keep_trailing_newline``.
Templates never see IR objects: callers compute names and literals and the templates
only place them.  ``StrictUndefined`` turns a missing variable into an error instead of
an empty string in emitted code.
"""
from __future__ import annotations

from functools import lru_cache
from importlib.resources import files
from pathlib import Path

import jinja2

#: The package whose directory holds the templates.
TEMPLATE_PACKAGE = "fecc.templates"


def template_root() -> Path:
    """The templates directory (``templates/`` of the repository, installed as ``fecc.templates``)."""
    return Path(str(files(TEMPLATE_PACKAGE)))


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    """The shared environment; template names are paths under ``templates/`` (``"c/engine.c.j2"``)."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template_root())),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )


def render(name: str, **context) -> str:
    """Render the template ``name`` (a path under ``templates/``)."""
    return environment().get_template(name).render(**context)
