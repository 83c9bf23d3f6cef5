"""fecc: compile a frozen legacy gradient-boosted model, plus audited symbolic experts, into a bundle.

The library entry points (the CLI only parses arguments and calls them):

* :func:`fecc.compile` — model + labelled data → a verified bundle directory
  (:func:`fecc.driver.compile_bundle`), options in one :class:`fecc.CompileOptions`;
* :func:`fecc.score` — a table through a bundle's runtime into parquet/CSV
  (:func:`fecc.scoring.score`);
* :func:`fecc.inspect` — verify a bundle and describe it (:func:`fecc.inspection.inspect`);
* :func:`fecc.audit` — what a bundle does, as text, HTML or Markdown (:func:`fecc.report.audit`).

They are imported on first use, so ``import fecc`` stays cheap.
"""
__version__ = "0.1.0"

#: public name → (module, attribute)
_EXPORTS = {
    "compile": ("fecc.driver", "compile_bundle"),
    "CompileOptions": ("fecc.options", "CompileOptions"),
    "score": ("fecc.scoring", "score"),
    "inspect": ("fecc.inspection", "inspect"),
    "audit": ("fecc.report", "audit"),
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    try:
        module, attribute = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'fecc' has no attribute {name!r}") from None
    from importlib import import_module

    value = getattr(import_module(module), attribute)
    globals()[name] = value  # the next access skips this function
    return value
