"""How a command ended, and the errors a transport raises about commands.

Design note: every transport (REST, CLI, the engine in-process, this host)
returns the same ``ExecResult``; a non-zero exit is data, not an exception,
until the caller asks with ``check()``. A command that could not be started
at all (no such program in the container) is different: no exit code of the
program exists, so ``execute`` raises ``CommandNotFound`` (a ``NotFound``)
whichever driver ran it. Standard library only.
"""

from __future__ import annotations

from cove.model.errors import InternalError, NotFound

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["CommandFailed", "CommandNotFound", "ExecResult"]


class CommandFailed(InternalError):
    """``ExecResult.check()`` on a command that exited non-zero.

    ``result`` is the whole ``ExecResult`` (exit code and captured output).
    """

    def __init__(self, message: str, result: ExecResult) -> None:
        super().__init__(message)
        self.result = result

    @property
    def exit_code(self) -> int:
        return self.result.exit_code


class CommandNotFound(NotFound):
    """The program to run does not exist in the container (exit code 127)."""

    def __init__(self, message: str, command: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.command = list(command)


def _tail(data: bytes, limit: int = 400) -> str:
    text = data.decode("utf-8", "replace").strip()
    return text if len(text) <= limit else "..." + text[-limit:]


class ExecResult:
    """Exit code and the output that was captured (empty when streamed).

    ``command`` is the argv that ran, for messages.
    """

    __slots__ = ("command", "exit_code", "stderr", "stdout")

    def __init__(self, exit_code: int, stdout: bytes = b"", stderr: bytes = b"",
                 command: Sequence[str] | None = None) -> None:
        self.exit_code = exit_code
        self.stdout = stdout
        self.stderr = stderr
        self.command = list(command) if command is not None else None

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    @property
    def text(self) -> str:
        """stdout decoded as UTF-8 (undecodable bytes replaced)."""
        return self.stdout.decode("utf-8", "replace")

    def check(self) -> ExecResult:
        """Return self if the command exited 0.

        Raises:
            CommandFailed: it exited non-zero; the message names the command,
                the code and the end of its stderr.
        """
        if self.exit_code != 0:
            what = " ".join(self.command) if self.command else "command"
            err = _tail(self.stderr)
            raise CommandFailed(f"{what!s} exited {self.exit_code}"
                                + (f": {err}" if err else ""), self)
        return self

    def __repr__(self) -> str:
        return (f"<ExecResult exit_code={self.exit_code} stdout={len(self.stdout)}B "
                f"stderr={len(self.stderr)}B>")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ExecResult):
            return NotImplemented
        return (self.exit_code, self.stdout, self.stderr) == \
            (other.exit_code, other.stdout, other.stderr)

    __hash__ = None  # type: ignore[assignment]
