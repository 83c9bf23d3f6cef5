"""Frontend: read the legacy model and the table, line them up, split the rows."""
from .models import LegacyModel, load_legacy_model
from .reference import reference_margin
from .table import Dataset, prepare, read_table

__all__ = ["LegacyModel", "load_legacy_model", "reference_margin", "Dataset", "prepare", "read_table"]
