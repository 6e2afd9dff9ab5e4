"""gunicorn's own log lines as scrubbed JSON: ``logger_class = "common.gunicorn_logging.JsonLogger"``.

gunicorn (and aiohttp's worker, which logs through it) writes boot and exit notices and
"Error handling request" tracebacks to its own error log, bypassing the root logger. A
malformed request's error quotes the raw bytes it could not parse, Authorization header
included, so those lines must pass the same scrubber as everything else.
"""

from __future__ import annotations

from typing import Any

from gunicorn.glogging import Logger

from common import jsonlog


class JsonLogger(Logger):  # type: ignore[misc]
    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        self.error_log.handlers[:] = [jsonlog.json_handler()]
