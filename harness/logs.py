"""The library's messages go to the `harness` logger, never to print, so that a notebook or a
training script decides what it shows; the command line shows them as plain lines on stdout."""

from __future__ import annotations

import logging
import sys
from typing import Any

LOG = logging.getLogger("harness")


def say(message: str) -> None:
    """A progress message (INFO)."""
    LOG.info(message)


def progress_bar(total: int | None, desc: str, enabled: bool) -> Any:
    """A bar of questions done, on stderr (tqdm), or one that shows nothing."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="q", disable=not enabled, leave=False)


def show_on_stdout() -> None:
    """The command line's view: every message of INFO and above, as it is, on stdout."""
    for handler in [h for h in LOG.handlers if getattr(h, "harness_cli", False)]:
        LOG.removeHandler(handler)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.harness_cli = True  # type: ignore[attr-defined]
    LOG.addHandler(handler)
    LOG.setLevel(logging.INFO)
    LOG.propagate = False
