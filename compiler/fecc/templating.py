"""The one jinja2 environment for every template fecc renders (emitted code, prompts, reports).

Templates live in the repository's ``templates/`` directory, installed as the package
``fecc.templates``.  They never see IR objects: callers compute names and literals and
the templates only place them.  ``StrictUndefined`` turns a missing variable into an
error instead of an empty string in emitted code.
"""
from __future__ import annotations

from functools import lru_cache
from importlib.resources import files

import jinja2


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    root = files("fecc.templates")
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(root)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )


def render(name: str, **context) -> str:
    """Render the template ``name`` (a path under ``templates/``)."""
    return environment().get_template(name).render(**context)
