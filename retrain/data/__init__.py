"""Read daily data (a file or a folder of CSV/Parquet, local or s3://), validate it, cut time windows.

One job a module: `windows` (the training, validation and monitoring windows of an as-of day, a cycle's
`Plan` of them, and how much of one the data covered), `files` (listing `data.path`, the days folders name, time
units and statistics), `reader` (one file's rows in a window), `source` (`DataSource`: windows read and kept,
the default as-of; other kinds of data register with `register_source`), `validation` (types, labels, a
window's rows, fingerprints).
"""

from retrain.data.files import DATE_KEY, EPOCH_UNITS, DataFile, epoch_unit
from retrain.data.source import READ_SECONDS, DataSource, load, register_source
from retrain.data.validation import fingerprint, labels, select, time_range, validate
from retrain.data.windows import (
    Coverage,
    Plan,
    Window,
    Windows3,
    coverage,
    effective_windows,
    parse_as_of,
    plan_for,
    windows_for,
)

__all__ = [
    "DATE_KEY",
    "EPOCH_UNITS",
    "READ_SECONDS",
    "Coverage",
    "DataFile",
    "DataSource",
    "Plan",
    "Window",
    "Windows3",
    "coverage",
    "effective_windows",
    "epoch_unit",
    "fingerprint",
    "labels",
    "load",
    "parse_as_of",
    "plan_for",
    "register_source",
    "select",
    "time_range",
    "validate",
    "windows_for",
]
