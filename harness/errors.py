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
    """A bad input or an impossible request: the CLI prints it and exits 2, without a traceback."""

    exit_code = 2

    def __init__(self, message: str | None = None, problems: list[Problem] | None = None):
        self.problems = list(problems or [])
        if message is None:
            message = "\n".join(str(p) for p in self.problems)
        super().__init__(message)


class InputError(HarnessError):
    """A malformed file or argument (suite, models.yaml, data, rules, command-line value)."""


def hint(value: object, known: Iterable[str], label: str = "allowed") -> str:
    """'did you mean X?' when something known is close to `value`, else the list of the known."""
    import difflib

    names = sorted(known)
    close = difflib.get_close_matches(str(value), names, n=1)
    return f"did you mean '{close[0]}'?" if close else f"{label}: {', '.join(names) or 'none'}"
