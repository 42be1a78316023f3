"""Transient failures (a dropped connection, a timeout, a 5xx or 429 answer) retried with
exponential backoff; anything else, and the last transient one, becomes a PublishError.

Each retried unit is a whole idempotent step (one blob, one manifest, one commit), so a
retry never resumes a half-finished upload session.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from inferc.core.errors import PublishError

log = logging.getLogger(__name__)
T = TypeVar("T")

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5  # tries in all, the first included
    initial_delay_s: float = 1.0
    factor: float = 2.0
    max_delay_s: float = 30.0
    request_timeout_s: float = 120.0  # per HTTP request: connecting, and each wait for bytes

    def delays(self) -> list[float]:
        """The waits between tries: initial, initial * factor, ... capped."""
        return [min(self.max_delay_s, self.initial_delay_s * self.factor**i) for i in range(self.attempts - 1)]


class TransientError(Exception):
    """A failure worth another try (a 5xx/429 answer, a reset connection)."""


def with_retry(policy: RetryPolicy, what: str, fn: Callable[[], T], is_transient: Callable[[BaseException], bool],
               sleep: Callable[[float], None] = time.sleep) -> T:
    """fn(), tried again after each transient failure; raises PublishError naming `what`."""
    delays = policy.delays()
    for attempt in range(policy.attempts):
        try:
            return fn()
        except PublishError:
            raise
        except Exception as exc:  # noqa: BLE001 - classified just below; anything not transient is re-raised
            if not (isinstance(exc, TransientError) or is_transient(exc)):
                raise
            if attempt == policy.attempts - 1:
                raise PublishError(f"{what} failed after {policy.attempts} attempts: {_reason(exc)}") from exc
            log.warning("%s failed (%s); retry %d of %d in %.1f s", what, _reason(exc), attempt + 1, policy.attempts - 1, delays[attempt])
            sleep(delays[attempt])
    raise AssertionError("unreachable")


def _reason(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:300]
