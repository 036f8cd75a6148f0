"""Settings read up front, so a bad `IMGCONV_*` value ends the process with one clear line."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from imgconv_core.settings import Settings

ENV_PREFIX = "IMGCONV_"


class SettingsError(click.ClickException):
    """A bad setting: printed as `Error: IMGCONV_X: why`, exit code 2, no traceback."""

    exit_code = 2


def describe_validation_error(error: object) -> str:
    """One line per bad value of a pydantic ValidationError, naming the variables."""
    from pydantic import ValidationError

    assert isinstance(error, ValidationError)
    lines = []
    for item in error.errors(include_url=False, include_input=False):
        message = str(item["msg"]).removeprefix("Value error, ")
        fields = [str(part) for part in item["loc"] if isinstance(part, str)]
        if fields:
            names = ", ".join(f"{ENV_PREFIX}{field.upper()}" for field in fields[:1])
            lines.append(f"{names}: {message}")
        else:  # a rule across several settings; its message names them
            lines.append(message)
    return "; ".join(lines)


def load_settings() -> Settings:
    """The process settings, or a SettingsError naming the bad variable."""
    from pydantic import ValidationError

    from imgconv_core.settings import get_settings

    try:
        return get_settings()
    except ValidationError as error:
        raise SettingsError(describe_validation_error(error)) from None
