"""The pandas engine's read-ahead (`engine_pandas._ahead`): every batch in order, one read ahead at most, a read
error raised where the batch would have come, and a stopped run stops the reader and closes its file."""

from __future__ import annotations

import threading

import pytest

from retrain.batch.engine_pandas import _ahead
from retrain.errors import DataError


def test_items_come_in_order_with_at_most_one_read_ahead():
    produced: list[int] = []
    gate = threading.Event()

    def source():
        for i in range(5):
            produced.append(i)
            yield i

    got = []
    for item in _ahead(source()):
        got.append(item)
        if item == 1:
            # the reader may have read 2 (waiting in the slot) and 3 (waiting to be put), never 4
            gate.wait(0.3)
            assert max(produced) <= 3
    assert got == [0, 1, 2, 3, 4]


def test_a_read_error_is_raised_in_order_after_the_batches_before_it():
    def source():
        yield 1
        yield 2
        raise DataError("cannot read data file x.parquet: truncated")

    got = []
    with pytest.raises(DataError, match="x.parquet"):
        for item in _ahead(source()):
            got.append(item)
    assert got == [1, 2]


def test_stopping_early_stops_the_reader_and_closes_its_source():
    closed = threading.Event()

    def source():
        try:
            yield from range(1_000)
        finally:
            closed.set()

    stream = _ahead(source())
    assert next(stream) == 0
    stream.close()  # what a failing write does to the engine's loop
    assert closed.wait(5)
    assert not any(t.name == "retrain-score-read" for t in threading.enumerate())
