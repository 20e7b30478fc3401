"""Error types that turn bad input into one clear message instead of a traceback.

Every message names the file, the field (a dotted path) and the fix, because the people reading them are
running a suite on a box under test and need to know what to edit, not where the code failed.
"""

from __future__ import annotations


class HwbenchError(Exception):
    """Base class for errors raised by pytest-hwbench."""


class HwbenchInputError(HwbenchError):
    """Bad user input: a recipe, a baseline file, a marker argument or a server answer.

    ``str(err)`` reads ``<file>: <field>: <problem> (fix: <fix>)`` with the parts that are known.
    """

    def __init__(self, problem: str, *, file: str | None = None, field: str | None = None,
                 fix: str | None = None) -> None:
        self.problem = problem
        self.file = file
        self.field = field
        self.fix = fix
        super().__init__(self.render())

    def render(self) -> str:
        parts = [p for p in (self.file, self.field) if p]
        text = ": ".join([*parts, self.problem])
        if self.fix:
            text += f" (fix: {self.fix})"
        return text


class ServiceUnavailable(HwbenchError):
    """An optional heavy piece (a service, Docker, a binary) is not available on this machine.

    The plugin turns it into a precise skip, or into a failure when ``HWBENCH_FAIL_ON_UNAVAILABLE=1``
    (CI sets it, so nothing is skipped silently there).
    """
