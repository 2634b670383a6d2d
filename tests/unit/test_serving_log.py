"""The prediction log's layout and reads (SQLite files; no MLflow): reads that cost the window, labels joined by
key, features once per record, older logs migrated in place, retention."""

from __future__ import annotations

import json
import sqlite3
import uuid
from datetime import datetime, timedelta

import numpy as np
import pytest

from retrain.serving.predlog import Batch, LoggedRequest, PredictionLog, new_request_id
from tests.logfill import START, fill


def _log(tmp_path, name="log.db", **kw) -> PredictionLog:
    return PredictionLog(f"sqlite:///{tmp_path / name}", **kw)


def test_a_window_read_searches_the_time_index_and_probes_labels_by_key(tmp_path):
    log = _log(tmp_path)
    fill(log, 50)
    plan = log.explain_rows(
        "m", since=START, until=START + timedelta(seconds=10), variants=("production",), versions=("1",)
    )
    assert plan[0].startswith("SEARCH predictions USING INDEX ix_predictions_at (at>? AND at<?)"), plan
    assert any(line.startswith("SEARCH feedback USING INDEX ix_feedback_request_id (request_id=? AND record=?)")
               for line in plan), plan  # fmt: skip
    assert not any(line.startswith("SCAN") for line in plan), plan
    log.engine.dispose()


def _steps(log: PredictionLog, **window) -> tuple[int, int]:
    """(rows returned, SQLite virtual-machine steps / 100) of one `rows` call: work, not wall-clock time."""
    counted = [0]
    raw = log.engine.raw_connection()
    try:
        raw.driver_connection.set_progress_handler(lambda: counted.__setitem__(0, counted[0] + 1) or 0, 100)
        query = log._reader.rows_query("m", **window)
        compiled = query.compile(dialect=log.engine.dialect, compile_kwargs={"render_postcompile": True})
        params = compiled.construct_params()
        processors = compiled._bind_processors
        values = [processors[k](params[k]) if k in processors else params[k] for k in compiled.positiontup]
        cursor = raw.cursor()
        found = len(cursor.execute(str(compiled), values).fetchall())
    finally:
        raw.close()
    return found, counted[0]


def test_the_same_window_costs_the_same_on_a_log_ten_times_larger(tmp_path):
    small, big = _log(tmp_path, "small.db"), _log(tmp_path, "big.db")
    # the same last 1,000 seconds in both; the big log has 18,000 more rows before them (and their labels)
    fill(small, 2_000, start=START)
    fill(big, 20_000, start=START - timedelta(seconds=18_000))
    window = {"since": START + timedelta(seconds=1_000), "until": START + timedelta(seconds=2_000)}
    rows_small, work_small = _steps(small, **window)
    rows_big, work_big = _steps(big, **window)
    assert rows_small == rows_big == 1_000
    assert work_big <= 1.3 * work_small, (work_small, work_big)
    whole, work_whole = _steps(big)
    assert whole == 20_000 and work_whole > 10 * work_big  # the counter does see the work of a bigger read
    assert small.rows("m", **window)["label"].notna().sum() == 200


def test_features_are_kept_once_per_record_and_read_back_as_sent(tmp_path):
    log = _log(tmp_path)
    at = START
    records = [{"customer_id": "C1", "age": 30, "channel": "web"}, {"customer_id": "C2", "age": 41, "channel": None}]
    body = json.dumps({"dataframe_records": records})
    kw = {"entity_ids": ["C1", "C2"], "assignment": ["entity", "entity"]}
    production = Batch("r1", at, "m", "production", "1", True, [0, 1], prediction=np.array([0, 1]),
                       probability=np.array([0.2, 0.7]), latency_ms=1.0, **kw)  # fmt: skip
    failed = Batch("r1", at, "m", "candidate", "2", False, [1], ["C2"], ["entity"], error="RuntimeError: boom")
    shadow = Batch("r1", at, "m", "shadow", "3", False, [0, 1], prediction=np.array([1, 1]),
                   probability=np.array([0.6, 0.8]), latency_ms=2.0, **kw)  # fmt: skip
    log.write_now([(LoggedRequest("r1", at, "m", 2, body), [failed, production]), (None, [shadow])])
    db = sqlite3.connect(tmp_path / "log.db")
    carried = db.execute("SELECT variant, record, features FROM predictions WHERE features IS NOT NULL").fetchall()
    assert sorted(carried) == [("production", 0, '[30,"web"]'), ("production", 1, "[41,null]")]
    assert db.execute("SELECT names FROM feature_sets").fetchall() == [
        ('{"columns":["age","channel"],"entity":"customer_id"}',)
    ]
    assert not db.execute("SELECT name FROM sqlite_master WHERE name = 'requests'").fetchall()  # no bodies kept
    rows = log.rows("m", features=True)
    assert len(rows) == 5
    for record, fields in zip(rows["record"], rows["features"], strict=True):
        assert fields == records[record]
    assert log.find_records("m", "r1") == 2 and log.find_records("m", "nope") == 0
    assert log.latest_for_entity("m", "C2") == ("r1", 1)
    log.engine.dispose()


OLD_LAYOUT = """
CREATE TABLE requests (request_id VARCHAR(36) PRIMARY KEY, at DATETIME NOT NULL, model VARCHAR(256) NOT NULL,
  records INTEGER NOT NULL, body TEXT NOT NULL);
CREATE TABLE predictions (id INTEGER PRIMARY KEY, request_id VARCHAR(36) NOT NULL, record INTEGER NOT NULL,
  at DATETIME NOT NULL, model VARCHAR(256) NOT NULL, entity_id VARCHAR(256), assignment VARCHAR(16) NOT NULL,
  variant VARCHAR(16) NOT NULL, version VARCHAR(32) NOT NULL, served BOOLEAN NOT NULL, prediction SMALLINT,
  probability FLOAT, latency_ms FLOAT, error TEXT);
CREATE INDEX ix_predictions_request ON predictions (request_id, record);
CREATE INDEX ix_predictions_model_at ON predictions (model, at);
CREATE INDEX ix_predictions_entity ON predictions (model, entity_id, at);
CREATE TABLE feedback (id INTEGER PRIMARY KEY, request_id VARCHAR(36) NOT NULL, record INTEGER NOT NULL,
  label SMALLINT NOT NULL, at DATETIME NOT NULL, entity_id VARCHAR(256));
CREATE INDEX ix_feedback_request ON feedback (request_id, record);
"""


def test_a_log_written_by_the_older_layout_is_migrated_in_place_and_reads_the_same(tmp_path):
    db = sqlite3.connect(tmp_path / "old.db")
    db.executescript(OLD_LAYOUT)
    body = json.dumps({"dataframe_split": {"columns": ["customer_id", "age"], "data": [["C7", 50], ["C8", 61]]}})
    db.execute("INSERT INTO requests VALUES ('old1', '2026-11-30 10:00:00.250000', 'm', 2, ?)", (body,))
    for record, entity in ((0, "C7"), (1, "C8")):
        db.execute(
            "INSERT INTO predictions (request_id, record, at, model, entity_id, assignment, variant, version, served, "
            "prediction, probability, latency_ms) VALUES ('old1', ?, '2026-11-30 10:00:00.250000', 'm', ?, 'entity', "
            "'production', '1', 1, 1, 0.9, 2.0)",
            (record, entity),
        )
    db.execute("INSERT INTO feedback (request_id, record, label, at) VALUES ('old1', 1, 0, '2026-11-30 11:00:00')")
    db.commit()
    db.close()
    log = PredictionLog.existing(f"sqlite:///{tmp_path / 'old.db'}")
    fill(log, 3, start=datetime(2026, 12, 1))  # new rows next to the migrated ones
    rows = log.rows("m", features=True)
    assert list(rows["request_id"][:2]) == ["old1", "old1"]
    assert rows["at"].iloc[0] == datetime(2026, 11, 30, 10, 0, 0, 250000)
    assert rows["features"].iloc[1] == {"customer_id": "C8", "age": 61}  # from the old body
    assert rows["label"].iloc[1] == 0 and rows["label"].iloc[0] != rows["label"].iloc[0]
    assert rows["features"].iloc[2]["channel"] == "web"  # from the new per-record column
    assert len(log.rows("m", since=datetime(2026, 11, 30, 10), until=datetime(2026, 11, 30, 11))) == 2
    db = sqlite3.connect(tmp_path / "old.db")
    assert db.execute("PRAGMA user_version").fetchone() == (2,)
    assert db.execute("SELECT DISTINCT typeof(at) FROM predictions").fetchall() == [("integer",)]
    indexes = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"ix_predictions_at", "ix_feedback_request_id"} <= indexes and "ix_predictions_model_at" not in indexes
    log.engine.dispose()


def test_retention_deletes_rows_older_than_the_setting(tmp_path):
    log = _log(tmp_path, retention_days=1)
    fill(log, 48, start=START, step_s=3600)  # two days, one row an hour
    deleted = log.prune(now=START + timedelta(days=2))
    assert log.count("m") == 24 and deleted == 24 + 5  # 24 predictions and their 5 labels
    assert log.rows("m")["at"].min() == START + timedelta(days=1)
    assert _log(tmp_path, "other.db").prune() == 0  # no retention set: nothing deleted
    log.engine.dispose()


def test_retention_must_be_positive():
    from retrain.config import load_settings
    from retrain.errors import ConfigError

    with pytest.raises(ConfigError, match="serving.log_retention_days"):
        load_settings(None, ["serving.log_retention_days=0"])


def test_tally_counts_in_the_database_what_rows_would_give(tmp_path):
    log = _log(tmp_path)
    fill(log, 500, labelled_every=3)
    log.add_feedback([{"request_id": "0000-000000000003", "record": 0, "label": 0, "at": START, "entity_id": None}])
    window = {"since": START + timedelta(seconds=100), "until": START + timedelta(seconds=400), "versions": ("1",)}
    rows = log.rows("m", **window)
    labelled = rows[rows["label"].notna()]
    assert log.tally("m", **window) == {
        "records": len(rows),
        "labelled": len(labelled),
        "correct": int((labelled["prediction"] == labelled["label"]).sum()),
    }
    assert log.tally("m", since=START + timedelta(days=9)) == {"records": 0, "labelled": 0, "correct": 0}
    log.engine.dispose()


def test_request_ids_are_uuid7_text_ordered_by_time_and_unique():
    base = datetime(2026, 12, 3, 13, 0, 0)
    times = [base + timedelta(milliseconds=ms) for ms in (0, 1, 2, 999, 1000, 60_000, 86_400_000)]
    ids = [new_request_id(at) for at in times]
    for text, at in zip(ids, times, strict=True):
        parsed = uuid.UUID(text)
        assert str(parsed) == text and len(text) == 36  # standard lower-case UUID text, fits String(36)
        assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
        assert parsed.int >> 80 == (at - datetime(1970, 1, 1)) // timedelta(milliseconds=1)  # the time prefix
    assert ids == sorted(ids)  # text order is time order (across ms, s, a day)
    # the random part: extreme entropy keeps the version and variant bits and still sorts by time
    low, high = new_request_id(base, bytes(10)), new_request_id(base, b"\xff" * 10)
    assert uuid.UUID(low).version == uuid.UUID(high).version == 7
    assert uuid.UUID(high).variant == uuid.RFC_4122
    assert low < high < new_request_id(base + timedelta(milliseconds=1), bytes(10))
    assert new_request_id(base, b"\x01" * 10) == new_request_id(base, b"\x01" * 10)  # seeded: reproducible
    same_ms = {new_request_id(base) for _ in range(10_000)}
    assert len(same_ms) == 10_000  # unique within one millisecond
