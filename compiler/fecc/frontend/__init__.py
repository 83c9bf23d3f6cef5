"""Frontend: read the legacy model (its description and its forest IR) and the table, line them up."""
from .forest import load_forest
from .models import LegacyModel, load_legacy_model
from .reference import reference_margin
from .table import Dataset, prepare, read_table

__all__ = ["LegacyModel", "load_legacy_model", "load_forest", "reference_margin", "Dataset", "prepare",
           "read_table"]
