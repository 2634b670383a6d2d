"""Bringing a prediction log written by an older `retrain serve` to the current layout, once, in place.

Older logs kept each request's body in table `requests` and, on SQLite, times as 26-character text; their
indexes joined labels by scanning. `migrate` adds the per-record feature columns (rows logged before keep
their features in `requests.body`, which `logread` still reads), creates the current indexes, drops the
ones nothing uses any more and, on SQLite, rewrites text times as integer microseconds. SQLite logs record
the layout in `PRAGMA user_version` (LAYOUT), so opening a current log costs one pragma read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy import Table
    from sqlalchemy.engine import Engine

LAYOUT = 2
OLD_INDEXES = ("ix_predictions_entity", "ix_predictions_model_at", "ix_feedback_request")
# "YYYY-MM-DD HH:MM:SS.ffffff" (how SQLAlchemy stored a DateTime in SQLite) -> microseconds since the epoch
_MICROS = (
    "CAST(strftime('%s', substr({c}, 1, 19)) AS INTEGER) * 1000000 + COALESCE(CAST(substr({c}, 21, 6) AS INTEGER), 0)"
)


def migrate(engine: Engine, tables: list[Table], *, new: bool) -> None:
    """Bring the log on `engine` to LAYOUT (`new`: the tables were just created, only mark the layout)."""
    from sqlalchemy import inspect

    sqlite = engine.dialect.name == "sqlite"
    if sqlite:
        with engine.connect() as conn:
            if int(conn.exec_driver_sql("PRAGMA user_version").scalar() or 0) >= LAYOUT:
                return
    inspector = inspect(engine)
    if not inspector.has_table("predictions"):
        return
    columns = {c["name"] for c in inspector.get_columns("predictions")}
    present = set(inspector.get_table_names())
    with engine.begin() as conn:
        if not new:
            if "feature_set" not in columns:
                conn.exec_driver_sql("ALTER TABLE predictions ADD COLUMN feature_set INTEGER")
            if "features" not in columns:
                conn.exec_driver_sql("ALTER TABLE predictions ADD COLUMN features TEXT")
            if sqlite:
                for name in ("predictions", "feedback", "requests"):
                    if name in present:
                        conn.exec_driver_sql(
                            f"UPDATE {name} SET at = {_MICROS.format(c='at')} WHERE typeof(at) = 'text'"
                        )
            for old in OLD_INDEXES:
                conn.exec_driver_sql(f"DROP INDEX IF EXISTS {old}")
            for table in tables:
                if table.name in present:
                    for index in table.indexes:
                        index.create(conn, checkfirst=True)
                else:  # e.g. feature_sets, new in this layout
                    table.create(conn, checkfirst=True)
        if sqlite:
            conn.exec_driver_sql(f"PRAGMA user_version = {LAYOUT}")
