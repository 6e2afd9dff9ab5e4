from __future__ import annotations

import json
import logging

from common.jsonlog import JsonFormatter, scrub


def test_scrub_removes_credentials() -> None:
    line = "headers={'Authorization': 'Basic dXNlcjpwYXNz'} password=hunter2 uri=https://u:s3cret@host/"
    out = scrub(line)
    assert "dXNlcjpwYXNz" not in out and "hunter2" not in out and "s3cret" not in out


def test_formatter_writes_one_json_object() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "token=abc %s", ("y",), None)
    entry = json.loads(JsonFormatter().format(record))
    assert entry["level"] == "info" and "abc" not in entry["msg"]
