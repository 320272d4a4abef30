"""The one error type a client can cause: it carries the HTTP status to answer with.

Raised anywhere below the routes (image decoding, archive reading, the dataset store, the job
checks); the API turns every one into `{"detail": ...}` with one exception handler.
"""

from __future__ import annotations


class ClientError(Exception):
    """Input a client must fix; `status_code` is the HTTP answer, `detail` says what to fix."""

    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail


SHOWN = 10
"""How many offending items a message names before 'and N more'."""


def some(items: list[str]) -> str:
    """The first few `items` for an error message: 'a, b, c and 12 more'."""
    shown = ", ".join(items[:SHOWN])
    return shown if len(items) <= SHOWN else f"{shown} and {len(items) - SHOWN} more"
