"""User-facing errors.

Every problem caused by the user's input (a flag, a file, a config field) is raised as `UserError`; the CLI turns it
into one line on stderr and exit status 2. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input: the message names the file, flag or field at fault."""

    exit_code = 2
