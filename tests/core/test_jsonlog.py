from __future__ import annotations

import json
import logging

from tenant_metrics.core.jsonlog import JsonFormatter, scrub


def test_scrub_removes_credentials() -> None:
    line = "headers={'Authorization': 'Basic dXNlcjpwYXNz'} password=hunter2 uri=https://u:s3cret@host/"
    out = scrub(line)
    assert "dXNlcjpwYXNz" not in out and "hunter2" not in out and "s3cret" not in out


def test_formatter_writes_one_json_object() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "token=abc %s", ("y",), None)
    entry = json.loads(JsonFormatter().format(record))
    assert entry["level"] == "info" and "abc" not in entry["msg"]


def test_extra_fields_are_scrubbed_too() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "calling", (), None)
    record.password = "hunter2"  # type: ignore[attr-defined]
    record.url = "https://user:s3cret@host/path"  # type: ignore[attr-defined]
    record.headers = {"Authorization": "Bearer abc", "Accept": "json"}  # type: ignore[attr-defined]
    line = JsonFormatter().format(record)
    assert "hunter2" not in line and "s3cret" not in line and "abc" not in line
    assert json.loads(line)["headers"]["Accept"] == "json"
