"""Request bodies to frames (every shape MLflow accepts, every refusal naming its field), and webhook signatures."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from retrain.serving.payload import Column, PayloadError, columns_of, parse

COLUMNS = [Column("age", "int"), Column("income", "float"), Column("channel", "str")]
RECORDS = [
    {"age": 34, "income": 41000.5, "channel": "web", "customer_id": "c1"},
    {"age": 51.0, "income": 12, "channel": "store", "customer_id": 77},
    {"age": 29, "income": 0.0, "channel": "mobile"},
]


def bodies():
    names = ["age", "income", "channel", "customer_id"]
    return {
        "dataframe_split": {
            "dataframe_split": {"columns": names, "data": [[r.get(n) for n in names] for r in RECORDS]}
        },
        "dataframe_records": {"dataframe_records": RECORDS},
        "instances": {"instances": RECORDS},
        "inputs records": {"inputs": RECORDS, "params": {"ignored": True}},
        "inputs columns": {"inputs": {n: [r.get(n) for r in RECORDS] for n in names}},
    }


@pytest.mark.parametrize("shape", list(bodies()))
def test_every_accepted_shape_gives_the_same_typed_frame_and_ids(shape):
    parsed = parse(bodies()[shape], COLUMNS, "customer_id")
    assert list(parsed.frame.columns) == ["age", "income", "channel"]
    assert parsed.frame["age"].dtype == np.int64 and parsed.frame["age"].tolist() == [34, 51, 29]
    assert parsed.frame["income"].dtype == np.float64 and parsed.frame["income"].tolist() == [41000.5, 12.0, 0.0]
    assert parsed.frame["channel"].tolist() == ["web", "store", "mobile"]
    assert parsed.entity_ids == ["c1", "77", None]


def refusal(body, columns=COLUMNS) -> tuple[int, str]:
    with pytest.raises(PayloadError) as info:
        parse(body, columns, "customer_id")
    assert "\n" not in info.value.message
    return info.value.status, info.value.message


def test_refusals_name_the_record_and_field():
    records = lambda **change: {"dataframe_records": [{**RECORDS[0]}, {**RECORDS[1], **change}]}  # noqa: E731
    cases = [
        ({}, 400, "empty request body"),
        ([1, 2], 400, "the body is a JSON list, not an object of records: send an object with one of the keys"),
        (None, 400, "the body is JSON null, not an object of records"),
        (3.5, 400, "the body is a JSON number, not an object of records"),
        ("text", 400, "the body is a JSON string, not an object of records"),
        (
            {"rows": []},
            400,
            "exactly one of the keys dataframe_split, dataframe_records, instances, inputs (found: rows)",
        ),
        ({"instances": [], "inputs": []}, 400, "exactly one of the keys"),
        ({"dataframe_split": {"columns": ["age"]}}, 400, "dataframe_split needs 'columns'"),
        ({"dataframe_split": {"columns": ["age", "income"], "data": [[1]]}}, 422, "row 0 has 1 values for 2 columns"),
        ({"instances": [1, 2]}, 422, "instances record 0 is not an object"),
        ({"inputs": {"age": [1], "income": [1, 2]}}, 422, "same length"),
        ({"dataframe_records": []}, 400, "no records"),
        ({"dataframe_records": [{"age": 1, "channel": "web"}]}, 422, "records are missing feature 'income'"),
        (records(age="forty"), 422, "record 1: feature 'age' must be a whole number, got 'forty'"),
        (records(age=40.5), 422, "record 1: feature 'age' must be a whole number, got 40.5"),
        (records(age=True), 422, "record 1: feature 'age' must be a whole number, got True"),
        (records(income="lots"), 422, "record 1: feature 'income' must be a number, got 'lots'"),
        (records(channel=3), 422, "record 1: feature 'channel' must be text, got 3"),
        (records(income=None), 422, "record 1: feature 'income' is null; send a number"),
        (records(customer_id=[1]), 422, "record 1: 'customer_id' must be text or a whole number, got [1]"),
    ]
    for body, status, message in cases:
        got_status, got_message = refusal(body)
        assert got_status == status and message in got_message, (body, got_status, got_message)


def test_optional_columns_accept_nulls_as_missing_values():
    columns = [
        Column("age", "int", required=False),
        Column("income", "float", required=False),
        Column("channel", "str", required=False),
    ]
    parsed = parse(
        {"dataframe_records": [{"age": None, "income": None, "channel": None}, {"age": 3, "income": 1.5}]},
        columns,
        "customer_id",
    )
    assert np.isnan(parsed.frame["age"][0]) and parsed.frame["age"][1] == 3
    assert np.isnan(parsed.frame["income"][0]) and parsed.frame["channel"].tolist() == [None, None]
    assert parsed.entity_ids == [None, None]


def test_columns_of_keeps_record_order_and_union_of_fields():
    assert columns_of({"dataframe_records": [{"a": 1}, {"b": 2}]}) == {"a": [1, None], "b": [None, 2]}


def test_webhook_signature_matches_mlflows_own_signing():
    from mlflow.webhooks.delivery import _generate_hmac_signature

    from retrain.serving.app import verify_signature

    body = json.dumps({"entity": "model_version_alias", "action": "created", "data": {"name": "m"}})
    now = str(int(time.time()))
    headers = {
        "x-mlflow-signature": _generate_hmac_signature("s3cret", "d-1", now, body),
        "x-mlflow-delivery-id": "d-1",
        "x-mlflow-timestamp": now,
    }
    assert verify_signature("s3cret", headers, body.encode()) is None
    assert "does not match" in verify_signature("other", headers, body.encode())
    assert "does not match" in verify_signature("s3cret", headers, body.encode() + b" ")
    assert "possible replay" in verify_signature("s3cret", headers, body.encode(), now=time.time() + 3600)
    assert "missing" in verify_signature("s3cret", {}, body.encode())
    assert "not a Unix time" in verify_signature("s3cret", {**headers, "x-mlflow-timestamp": "soon"}, body.encode())


def test_numbers_the_model_cannot_take_are_refused_naming_record_and_field():
    """Out of int64, of float64, or (for the columns our models cast themselves) of float32: 422 before any model
    runs, never an OverflowError (500) or an infinite value handed to the network."""
    columns = [
        Column("age", "int"),
        Column("income", "number"),
        Column("spend", "float"),
        Column("channel", "category"),
    ]
    record = {"age": 34, "income": 41000.5, "spend": 1.5, "channel": "web"}
    cases = [
        ({"age": 10**400}, "record 1: feature 'age' is out of range, got 1000"),
        ({"age": 2**63}, "record 1: feature 'age' is out of range, got 9223372036854775808; send a number with -2**63"),
        ({"income": 1e308}, "record 1: feature 'income' is out of range, got 1e+308; send a number with magnitude at "),
        ({"income": 10**39}, "(the model computes in float32)"),
        ({"income": -(10**400)}, "record 1: feature 'income' is out of range"),
        ({"spend": 10**400}, "record 1: feature 'spend' is out of range"),
    ]
    for change, message in cases:
        body = {"dataframe_records": [record, {**record, **change}]}
        status, got = refusal(body, columns)
        assert status == 422 and message in got and len(got) < 300, (change, got)
    fine = parse(
        {"dataframe_records": [{**record, "income": 3e38, "channel": 10**400, "customer_id": 10**40}]},
        columns,
        "customer_id",
    )
    assert fine.columns["income"][0] == 3e38 and fine.entity_ids == [str(10**40)]


def test_the_request_cap_and_bodies_that_are_not_records():
    body = {"dataframe_split": {"columns": ["age", "income", "channel"], "data": [[1, 2.0, "web"]] * 11}}
    with pytest.raises(PayloadError) as info:
        parse(body, COLUMNS, None, max_records=10)
    assert info.value.status == 413 and "11 records, over the limit of 10 per request (serving.max_records)" in (
        info.value.message
    )
    assert parse(body, COLUMNS, None, max_records=11).n == 11


def test_json_that_python_cannot_hold_is_a_400_and_nonstandard_json_still_parses():
    from retrain.serving.app import _json

    for body, message in [
        (b"[" * 100_000 + b"]" * 100_000, "the body nests too deeply"),
        (b'{"dataframe_records": [{"age": 1' + b"0" * 5000 + b"}]}", "not valid JSON"),
        (b"\xff\xfe{", "not valid JSON"),
        (b"{not json", "not valid JSON"),
        (b"  ", "empty request body"),
    ]:
        with pytest.raises(PayloadError) as info:
            _json(body)
        assert info.value.status == 400 and message in info.value.message and "\n" not in info.value.message
    nan = _json(b'{"inputs": [{"x": NaN, "big": 1' + b"0" * 400 + b"}]}")  # Python clients send NaN (json.dumps)
    assert np.isnan(nan["inputs"][0]["x"]) and nan["inputs"][0]["big"] == 10**400
    assert _json(json.dumps({"a": "é"}).encode("utf-16")) == {"a": "é"}
