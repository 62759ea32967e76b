"""Trackers bounded and honest: a tracking URI's credentials are never shown."""

from __future__ import annotations

import pytest

from callbacks.tracking import flat_params, redact

PASSWORD = "pa55-w0rd"


# ------------------------------------------------------------------------ redaction
@pytest.mark.parametrize("given, shown", [
    ("http://user:s3cret@host:5000", "http://user:***@host:5000"),
    ("https://TOKEN123@host/mlflow", "https://***@host/mlflow"),
    ("http://u:p@ss@host/a@b", "http://u:***@host/a@b"),
    ("postgresql://u:pw@db/mlflow?password=x&sslmode=on", "postgresql://u:***@db/mlflow"
     "?password=***&sslmode=on"),
    ("http://host/?token=abc&api_key=def&x=1", "http://host/?token=***&api_key=***&x=1"),
    ("failed: API request to http://a:b@h:1/api/2.0 failed", "failed: API request to "
     "http://a:***@h:1/api/2.0 failed"),
    ("sqlite:////tmp/x@y/mlflow.db", "sqlite:////tmp/x@y/mlflow.db"),
    ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
])
def test_redact_hides_uri_credentials_and_secret_parameters(given, shown):
    assert redact(given) == shown


def test_hyperparameters_a_tracker_records_show_no_credentials():
    uri = f"http://trainer:{PASSWORD}@host:5000"
    assert flat_params({"store": uri, "lr": 0.1, "milestones": [5, 8]}) == {
        "store": "http://trainer:***@host:5000", "lr": 0.1, "milestones": "[5, 8]"}
