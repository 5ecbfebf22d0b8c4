"""Log formats: plain text, or one JSON object per line (`OMNIREC_LOG_FORMAT=json`) for log
shippers."""

from __future__ import annotations

import json
import logging

TEXT_FORMAT = "%(levelname)s - %(asctime)s - %(name)s - %(message)s"


class JsonFormatter(logging.Formatter):
    """`{"time", "level", "logger", "message"[, "exception"]}` per record, one line each."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def formatter_config(log_format: str) -> dict[str, dict[str, str]]:
    """The `standard` formatter of a logging dictConfig in `log_format` ('text' or 'json')."""
    if log_format == "json":
        return {"standard": {"()": "omnirec.logs.JsonFormatter"}}
    return {"standard": {"format": TEXT_FORMAT}}
