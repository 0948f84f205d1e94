"""The retry budget: retries in flight may be at most a fraction of the requests in flight.

Without a budget, a fleet that starts failing gets every request retried up to twice: the load on the
survivors triples exactly when they are weakest (a retry storm). Envoy's answer, used here: allow a retry only
while ``retries in flight < max(min_concurrency, ratio * requests in flight)``; the floor keeps a lone client's
retries working (one request in flight * 20 % would otherwise allow none).
"""

from __future__ import annotations


class RetryBudget:
    def __init__(self, *, ratio: float = 0.2, min_concurrency: int = 3) -> None:
        self.ratio = ratio
        self.min_concurrency = min_concurrency
        self.requests = 0
        self.retries = 0
        self.refused = 0

    def request_started(self) -> None:
        self.requests += 1

    def request_finished(self) -> None:
        self.requests -= 1

    @property
    def limit(self) -> int:
        return max(self.min_concurrency, int(self.ratio * self.requests))

    def try_acquire(self) -> bool:
        """Take a retry token (give it back with :meth:`release`); False when the budget is spent."""
        if self.retries >= self.limit:
            self.refused += 1
            return False
        self.retries += 1
        return True

    def release(self) -> None:
        self.retries -= 1
