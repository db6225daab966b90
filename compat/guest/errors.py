"""What a guest's failure raises: an infrastructure error of its cell, never a verdict.

Apart from vm.py so that the validation of replies (guestmsg.py), which vm.py uses, can raise
it without importing vm.py back.
"""

from __future__ import annotations

from compat.errors import InfraError


class GuestError(InfraError):
    """The guest failed (did not boot, died, hung, broke the protocol): not a verdict."""

    def __init__(self, message: str, console_tail: str = ""):
        super().__init__(message)
        self.console_tail = console_tail


class GuestTimeout(GuestError):
    """The guest is alive but did not answer in time (a request's own timeout)."""
