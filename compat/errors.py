"""Exceptions that the CLI turns into one-line messages and distinct exit statuses."""

# Exit statuses, documented in the README.
EXIT_OK = 0
EXIT_FAILED = 1  # a regression or a required rejection (the gate)
EXIT_USAGE = 2  # bad input, bad settings, missing tools
EXIT_INFRA = 3  # a VM, QEMU or the archive failed: some cell has no verdict
EXIT_INTERRUPTED = 130


class CompatError(Exception):
    """An error with a message meant for the user and an exit status."""

    exit_status = EXIT_USAGE

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint

    def __str__(self) -> str:
        text = super().__str__()
        return f"{text} ({self.hint})" if self.hint else text


class UserError(CompatError):
    """Bad input or settings: the user can fix it (exit 2)."""


class InfraError(CompatError):
    """The machinery failed (VM, QEMU, archive): not a verdict about the program (exit 3)."""

    exit_status = EXIT_INFRA
