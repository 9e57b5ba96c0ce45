"""Structured logs for every long-running corral component.

JSON lines when stderr is not a terminal (for journald, files, log shippers);
readable, coloured console lines on a terminal. Log calls are events:
`log.info("pod_started", pod=..., node=...)`.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog

LEVELS = ("debug", "info", "warning", "error")


def configure(level: str = "info", *, json: bool | None = None, stream: TextIO | None = None) -> None:
    out = stream if stream is not None else sys.stderr
    if json is None:
        json = not out.isatty()
    numeric = logging.getLevelNamesMapping()[level.upper()]
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    # Libraries (grpc, aetcd) log through the standard library: keep their warnings.
    logging.basicConfig(
        level=max(numeric, logging.WARNING), stream=out, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


CLIP = 128


def clip(text: str, limit: int = CLIP) -> str:
    """A client-provided string made fit for a log line: at most ``limit`` characters
    (then how many more there were), control characters escaped."""
    shown = (
        text[:limit].encode("unicode_escape").decode("ascii")[:limit]
        if not text[:limit].isprintable()
        else text[:limit]
    )
    return shown if len(text) <= limit else f"{shown}…(+{len(text) - limit} chars)"
