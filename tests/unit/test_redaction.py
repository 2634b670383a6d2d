"""One redaction for every URI we print, log, tag or store: user info and credential query parameters go."""

from __future__ import annotations

import pytest

from retrain.redaction import has_secrets, redact_text, redact_uri, scrub, secrets_of


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        ("http://admin:PW@host:5000", "http://admin:***@host:5000"),
        ("http://user:SECRET@127.0.0.1:5000/?token=SECRET2", "http://user:***@127.0.0.1:5000/?token=***"),
        ("https://TOKEN123@host/mlflow", "https://***@host/mlflow"),
        ("postgresql+psycopg://retrain:pw@db:5432/mlflow", "postgresql+psycopg://retrain:***@db:5432/mlflow"),
        ("https://h/p?Key=1&x=keep&SIG=2&Signature=3", "https://h/p?Key=***&x=keep&SIG=***&Signature=***"),
        (
            "https://h/p?access_token=a&API_KEY=b&Password=c&secret=d",
            "https://h/p?access_token=***&API_KEY=***&Password=***&secret=***",
        ),
        (
            "s3://bucket/x?X-Amz-Credential=a&X-Amz-Security-Token=b",
            "s3://bucket/x?X-Amz-Credential=***&X-Amz-Security-Token=***",
        ),
        ("https://h/p#access_token=abc", "https://h/p#access_token=***"),
    ],
)
def test_secrets_are_masked_and_the_rest_is_kept(uri, shown):
    assert redact_uri(uri) == shown
    assert has_secrets(uri)


@pytest.mark.parametrize(
    "uri", ["sqlite:////tmp/x/mlflow.db", "http://127.0.0.1:5000", "https://h/p?page=2&sort=name", "data/daily", ""]
)
def test_uris_without_secrets_come_back_unchanged(uri):
    assert redact_uri(uri) == uri and not has_secrets(uri)


def test_uris_inside_a_text_are_redacted():
    text = "API request to http://u:SECRET@h:5000/?token=SECRET2/api/2.0/mlflow/runs/get failed (see 'https://k@x/')"
    out = redact_text(text)
    assert "SECRET" not in out and "k@" not in out
    assert out.startswith("API request to http://u:***@h:5000/?token=***")


def test_scrub_masks_a_stores_secrets_outside_uris_too():
    uri = "http://user:S%40CRET@host:1/?token=T0KEN"
    assert set(secrets_of(uri)) >= {"S%40CRET", "S@CRET", "T0KEN"}
    out = scrub("server said: bad password S@CRET for token T0KEN", [uri])
    assert "S@CRET" not in out and "T0KEN" not in out
