"""The one exception type for user errors.

The CLI prints a ``YqtError`` as a single line (plus an optional hint) and exits with its code; any
other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path


class YqtError(Exception):
    """A problem the user can fix: bad input, a missing file, an unavailable device."""

    def __init__(self, message: str, hint: str | None = None, exit_code: int = 2) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.exit_code = exit_code

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


def error_line(message: str, hint: str | None) -> str:
    """The problem and its fix in one line, as the CLI prints it and a pipeline step records it."""
    # One line, one stop: "Protobuf parsing failed." + "; hint" must not read ".;".
    return f"{message.rstrip('.;')}" + (f"; {hint}" if hint else "")


class Interrupted(BaseException):
    """Ctrl-C in the CLI. Not a KeyboardInterrupt: click would turn that into "Aborted!" and exit 1
    before yqt could say what was left; run steps record it as ``failed: interrupted`` either way,
    and name themselves here (``step``, ``run_root``) on the way out."""

    step: str | None = None
    run_root: Path | None = None
