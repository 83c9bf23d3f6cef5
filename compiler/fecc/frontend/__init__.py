"""Frontend: read the legacy model and the table, line them up, split the rows."""
from .models import LegacyModel, load_legacy_model
from .reference import reference_margin
from .splits import make_splits
from .table import Dataset, prepare, read_table

__all__ = ["LegacyModel", "load_legacy_model", "reference_margin", "make_splits", "Dataset", "prepare", "read_table"]
