"""`imgconv version`."""

from __future__ import annotations

import os
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version

import click


def imgconv_version() -> str:
    """The installed distribution's version."""
    try:
        return package_version("imgconv")
    except PackageNotFoundError:
        return "unknown"


@click.command()
def version() -> None:
    """Print the version (and the source revision an image was built from)."""
    revision = os.environ.get("IMGCONV_BUILD_REVISION", "")
    click.echo(f"imgconv {imgconv_version()}" + (f" ({revision})" if revision else ""))
