"""Turning a /feedback body into label rows: each item checked, and its request or entity found in the log."""

from __future__ import annotations

from typing import Any

from retrain.serving.payload import PayloadError
from retrain.serving.predlog import PredictionLog, utcnow


def feedback_rows(data: Any, predictions: PredictionLog, model: str) -> list[dict[str, Any]]:
    """Label rows by request id (+ record) or entity id from the decoded body; PayloadError naming the bad item."""
    items = data.get("feedback") if isinstance(data, dict) and "feedback" in data else [data]
    if not isinstance(items, list) or not items:
        raise PayloadError(
            400,
            'send {"request_id": ..., "label": 0|1} or {"entity_id": ..., "label": 0|1}, '
            'or a list of those under "feedback"',
        )
    rows = []
    at = utcnow()
    known: dict[str, int] = {}  # request id -> records, looked up once per call
    for i, item in enumerate(items):
        where = f"feedback {i}" if len(items) > 1 else "feedback"
        if not isinstance(item, dict):
            raise PayloadError(422, f"{where} must be an object with request_id or entity_id and label")
        label = item.get("label")
        if type(label) is not int or label not in (0, 1):
            raise PayloadError(422, f"{where}: label must be 0 or 1, got {label!r}")
        if item.get("request_id") is not None:
            rows.append(_by_request(predictions, model, where, item, label, at, known))
        elif item.get("entity_id") is not None:
            rows.append(_by_entity(predictions, model, where, item, label, at))
        else:
            raise PayloadError(422, f"{where}: give request_id (with record, default 0) or entity_id")
    return rows


def _by_request(
    predictions: PredictionLog, model: str, where: str, item: dict, label: int, at, known: dict[str, int]
) -> dict[str, Any]:
    request_id = str(item["request_id"])
    record = item.get("record", 0)
    if type(record) is not int or record < 0:
        raise PayloadError(422, f"{where}: record must be a record index (0, 1, ...), got {record!r}")
    records = known.get(request_id)
    if records is None:
        records = predictions.find_records(model, request_id)
        if records == 0 and predictions.flush(timeout=10):  # rows may still be on their way to the log
            records = predictions.find_records(model, request_id)
        known[request_id] = records
    if records == 0:
        raise PayloadError(404, f"{where}: unknown request_id {request_id!r}: no prediction with that id in the log")
    if record >= records:
        raise PayloadError(422, f"{where}: request {request_id} has {records} records; record {record} does not exist")
    return {"request_id": request_id, "record": record, "label": label, "at": at, "entity_id": None}


def _by_entity(predictions: PredictionLog, model: str, where: str, item: dict, label: int, at) -> dict[str, Any]:
    entity = str(item["entity_id"])
    found = predictions.latest_for_entity(model, entity)
    if found is None and predictions.flush(timeout=10):
        found = predictions.latest_for_entity(model, entity)
    if found is None:
        raise PayloadError(404, f"{where}: unknown entity_id {entity!r}: no prediction for it in the log")
    return {"request_id": found[0], "record": found[1], "label": label, "at": at, "entity_id": entity}
