"""Click parameter types shared by the commands."""

from __future__ import annotations

from typing import Any

import click

from protos.durations import DurationError, parse_seconds, parse_whole_seconds


class Duration(click.ParamType[float, Any]):
    """A duration in corral's one format (`protos.durations`), as seconds."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = str(value)
        try:
            return parse_seconds(str(value))
        except DurationError as e:
            self.fail(str(e), param, ctx)


class WholeDuration(click.ParamType[int, Any]):
    """A duration of whole seconds (TTLs)."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        try:
            return parse_whole_seconds(str(value))
        except DurationError as e:
            self.fail(str(e), param, ctx)
