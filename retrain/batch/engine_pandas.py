"""The pandas engine: read a batch, score it with the loaded model, append it to its day's staging file.

Our own models are scored through `retrain serve`'s fast path (`FastModel.predict_frame`: `features.encode`, then
the network; the pyfunc model's `predict` computes the same, behind a schema check and a DataFrame round trip);
other models through their pyfunc `predict`. The next batch is read on a thread while this one is scored and
written (pyarrow releases the GIL), one batch ahead at most.

Memory holds one batch at a time (about `score.batch_rows` rows) and one open Parquet writer per day scored,
whatever the population. Nothing is committed until every batch is written: a failure removes the staging files
and leaves every day's previous scores as they were.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime
from typing import Any

from retrain.batch.output import Output, schema
from retrain.batch.population import Batch, Population, batches
from retrain.batch.tally import Tally
from retrain.errors import DataError, first_line


def score_pandas(
    model: Any,
    version: str,
    population: Population,
    output: Output,
    *,
    batch_rows: int,
    scored_at: datetime,
    tally: Tally,
) -> dict[str, str]:
    """Score every row of `population` into `output`; {day: the day's file URI}, each committed atomically."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from retrain.model import conform
    from retrain.serving.fastpath import FastModel

    fast = FastModel.of(model)
    writers: dict[date, tuple[str, Any]] = {}
    id_type: pa.DataType | None = None
    stamp = pa.scalar(scored_at, pa.timestamp("us", tz="UTC"))
    try:
        for batch in _ahead(batches(population, batch_rows)):
            probability, prediction = _predict(model, fast, batch, conform)
            tally.add(probability, prediction)
            ids = batch.ids
            if id_type is None:
                id_type = ids.type if not pa.types.is_dictionary(ids.type) else ids.type.value_type
                id_type = pa.string() if pa.types.is_large_string(id_type) else id_type  # as Spark writes it
            ids = _as_type(ids, id_type, batch.path, population.spec.id or "")
            unique = np.unique(batch.days)
            for day in unique:
                if len(unique) == 1:
                    part_ids, p, y = ids, probability, prediction
                else:
                    mask = batch.days == day
                    part_ids, p, y = ids.filter(pa.array(mask)), probability[mask], prediction[mask]
                d = day.astype(date)
                if d not in writers:
                    staging = output.prepare(d)
                    writers[d] = (staging, pq.ParquetWriter(staging, schema(id_type), filesystem=output.location.fs))
                n = len(p)
                table = pa.table(
                    [
                        part_ids,
                        pa.array(p, pa.float64()),
                        pa.array(y, pa.int64()),
                        pa.repeat(pa.scalar(version, pa.string()), n),
                        pa.array(np.full(n, day), pa.date32()),
                        pa.repeat(stamp, n),
                    ],
                    schema=schema(id_type),
                )
                writers[d][1].write_table(table)
                tally.days[d.isoformat()] = tally.days.get(d.isoformat(), 0) + n
        for _, writer in writers.values():
            writer.close()
    except BaseException:
        for staging, writer in writers.values():
            try:
                writer.close()
            finally:
                output.discard(staging)
        raise
    if not writers:
        raise DataError(f"no rows to score: {population.describe()} holds none; check --day, --days and the data")
    return {d.isoformat(): output.commit(d, staging) for d, (staging, _) in sorted(writers.items())}


def _ahead(items: Iterator[Batch]) -> Iterator[Batch]:
    """`items`, each produced on a thread while the caller works on the one before (one waiting at most); an
    error while producing is raised here, in order; closing this generator stops the thread after its batch."""
    import queue
    import threading

    slots: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                slots.put(("item", item))
                if stop.is_set():
                    return
            slots.put(("end", None))
        except BaseException as exc:  # handed to the consumer, raised there
            slots.put(("error", exc))
        finally:
            close = getattr(items, "close", None)
            if close is not None:  # the reader's open file, closed on this thread
                close()

    thread = threading.Thread(target=produce, name="retrain-score-read", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = slots.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        while thread.is_alive():  # free its slot so a put blocked on a full queue returns and sees `stop`
            try:
                slots.get(timeout=0.1)
            except queue.Empty:
                pass
        thread.join()


def _predict(model: Any, fast: Any, batch: Batch, conform: Any) -> tuple[Any, Any]:
    """(probability float64, prediction int64) of a batch; DataError naming the file for rows the model refuses."""
    import numpy as np

    try:
        if fast is not None:
            prediction, probability = fast.predict_frame(batch.features)
            return probability, prediction
        out = model.predict(conform(batch.features, model))
    except Exception as exc:
        from mlflow.exceptions import MlflowException

        if not isinstance(exc, MlflowException | ValueError | TypeError):
            raise
        raise DataError(f"the model cannot score rows of {batch.path}: {first_line(exc)[:400]}") from None
    return out["probability"].to_numpy(np.float64), out["prediction"].to_numpy(np.int64)


def _as_type(ids: Any, id_type: Any, path: str, column: str) -> Any:
    import pyarrow as pa

    if pa.types.is_dictionary(ids.type):
        ids = ids.dictionary_decode()
    if ids.type == id_type:
        return ids
    try:
        return ids.cast(id_type)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise DataError(
            f"column {column!r} (data.id) is {ids.type} in {path} but {id_type} in earlier files; "
            "write the id with one type in every file"
        ) from None
