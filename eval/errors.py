"""Errors and exit codes of the evaluation tools.

Every error that the user can fix (a bad flag, a missing folder, a malformed file) is an
:class:`EvalInputError` whose ``str()`` is one line naming the file and the line or object, and which carries
the exit code the CLI returns. Recoverable oddities are not errors: they are collected as warnings with counts
(see :class:`WarningLog`).
"""
from __future__ import annotations

import logging
import sys

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_INTERNAL = 1  # a bug: reported with a traceback
EXIT_USAGE = 2  # bad command line (argparse uses 2 too)
EXIT_NOT_FOUND = 3  # a folder or file that does not exist
EXIT_BAD_INPUT = 4  # a malformed label/detection file, or (with --strict) a warning
EXIT_OUTPUT = 5  # the output folder could not be written

EXIT_CODES_HELP = """exit codes:
  0  success (warnings, if any, are printed on stderr with counts)
  1  internal error (a bug; printed with a traceback)
  2  usage error: bad or conflicting flags, unknown format
  3  a ground-truth or detection folder (or file) does not exist
  4  malformed input: bad JSON, missing keys, NaN/inf, zero or negative sizes, bad lines
     (with --strict also: classes only in detections, detections without ground truth, skipped files)
  5  the --savepath folder could not be written"""


class EvalInputError(Exception):
    """A problem with the user's input; ``str()`` is one line, ``exit_code`` is what the CLI returns."""

    def __init__(self, message: str, exit_code: int = EXIT_BAD_INPUT):
        super().__init__(message)
        self.exit_code = exit_code


class WarningLog:
    """Recoverable oddities, each kept once with a count and an example (file and object).

    ``add(key, message)`` stores ``message`` the first time ``key`` is seen and counts later occurrences;
    ``lines()`` gives one line per key. With ``strict=True`` the first warning raises :class:`EvalInputError`.
    """

    def __init__(self, strict: bool = False):
        self.strict = strict
        self._messages: dict[str, str] = {}
        self._counts: dict[str, int] = {}

    def add(self, key: str, message: str, count: int = 1) -> None:
        if self.strict:
            raise EvalInputError(f"{message} (an error because of --strict)", EXIT_BAD_INPUT)
        if key not in self._messages:
            self._messages[key] = message
            self._counts[key] = 0
            logger.debug("warning: %s", message)
        self._counts[key] += count

    def lines(self) -> list[str]:
        out = []
        for key, message in self._messages.items():
            count = self._counts[key]
            out.append(message if count <= 1 else f"{message} [and {count - 1} more like it]")
        return out

    def __len__(self) -> int:
        return len(self._messages)

    def __bool__(self) -> bool:
        return bool(self._messages)


def run_cli(parser, run, argv: list[str] | None = None) -> int:
    """Parse ``argv`` with the argparse ``parser`` and return ``run(args)``'s exit code: argparse's for
    ``--help`` (0) and usage errors (2, message already printed); an :class:`EvalInputError` is printed as
    ``error: ...`` on stderr and its exit code returned."""
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    try:
        return run(args)
    except EvalInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


def exit_with(main) -> None:
    """``sys.exit(main())`` for a ``python -m`` entry point; output piped into e.g. ``head`` and closed early
    ends the run quietly with :data:`EXIT_OK`."""
    try:
        sys.exit(main())
    except BrokenPipeError:
        sys.stderr.close()
        sys.exit(EXIT_OK)
