"""Errors a user can fix: each names the file, line and field, and maps to exit code 2."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one input, located as precisely as the input allows."""

    file: str
    message: str
    line: int | None = None
    field: str | None = None

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return (
            f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        )


class HarnessError(Exception):
    """A bad input or an impossible request: the CLI prints it and exits 2, without a traceback.

    `argument` names the library parameter at fault (`suites`, `models`, `data`, ...); the
    message leaves it out, so that the CLI can name its own flag for it and Python callers the
    parameter, and `str()` is "argument: message".
    """

    exit_code = 2

    def __init__(
        self,
        message: str | None = None,
        problems: list[Problem] | None = None,
        *,
        argument: str | None = None,
    ):
        self.problems = list(problems or [])
        if message is None:
            message = "\n".join(str(p) for p in self.problems)
        self.message = message
        self.argument = argument
        super().__init__(f"{argument}: {message}" if argument else message)


class InputError(HarnessError):
    """A malformed file or argument (suite, models.yaml, data, rules, command-line value)."""


class RunExists(InputError):
    """The output folder already holds a run, and resuming it was not asked for."""

    def __init__(self, folder: object):
        self.folder = folder
        super().__init__(
            f"{folder} already holds a run; resume it (resume=True) or choose another folder"
        )


class Contaminated(InputError):
    """Training rows contain evaluation questions, and training on them was not allowed."""

    def __init__(self, summary: str, listing: str):
        self.summary, self.listing = summary, listing
        super().__init__(
            f"{summary}; remove them or allow the overlap:\n{listing}", argument="data"
        )


def hint(value: object, known: Iterable[str], label: str = "allowed") -> str:
    """'did you mean X?' when something known is close to `value`, else the list of the known."""
    import difflib

    names = sorted(known)
    close = difflib.get_close_matches(str(value), names, n=1)
    return f"did you mean '{close[0]}'?" if close else f"{label}: {', '.join(names) or 'none'}"
