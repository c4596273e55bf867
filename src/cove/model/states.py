"""Instance states and LXD's status codes."""

from __future__ import annotations

import enum

__all__ = ["STATUS_CODES", "OperationStatus", "Status"]


class Status(str, enum.Enum):
    """An instance's status as LXD names it."""

    STOPPED = "Stopped"
    RUNNING = "Running"
    FROZEN = "Frozen"
    ERROR = "Error"

    @property
    def code(self) -> int:
        return STATUS_CODES[self.value]


class OperationStatus(str, enum.Enum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCESS = "Success"
    FAILURE = "Failure"
    CANCELLED = "Cancelled"

    @property
    def code(self) -> int:
        return STATUS_CODES[self.value]

    @property
    def final(self) -> bool:
        return self in (OperationStatus.SUCCESS, OperationStatus.FAILURE, OperationStatus.CANCELLED)


# From LXD's shared/api/status_code.go.
STATUS_CODES: dict[str, int] = {
    "Operation created": 100,
    "Started": 101,
    "Stopped": 102,
    "Running": 103,
    "Cancelling": 104,
    "Pending": 105,
    "Starting": 106,
    "Stopping": 107,
    "Aborting": 108,
    "Freezing": 109,
    "Frozen": 110,
    "Thawed": 111,
    "Error": 112,
    "Ready": 113,
    "Success": 200,
    "Failure": 400,
    "Cancelled": 401,
}
