"""The user-facing error types: a failure the user can fix, told in one line.

`score-sde` prints such an error's message as one line on stderr, without a traceback, and
exits with the type's status: `UsageError` (2) for a bad flag, config, input file or output
path, found before any work; `UserError` (1) for a run state that stops the work (a workdir in
use, no intact checkpoint, a full disk, a non-finite loss). Other exceptions are bugs: the CLI
says so and shows the traceback with `SCORE_SDE_DEBUG=1` or `--traceback`. Library code raises
these types (or subclasses that also derive from ValueError / RuntimeError) so that notebooks
get the same messages.
"""
from __future__ import annotations


class UserError(Exception):
    """A run that stops for a reason the user can fix; the message names the problem and the fix."""

    exit_code = 1


class UsageError(UserError, ValueError):
    """A bad flag, config value, input file or output path, found before any work."""

    exit_code = 2
