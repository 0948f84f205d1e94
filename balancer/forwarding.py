"""Forwarding one client request: shed, pick, proxy, retry elsewhere when that is safe.

::

    in flight ≥ limit ─────────────────────────────────────────────► 503 overloaded (Retry-After), fast
    pick: routable backends not yet tried; one whose breaker is due a trial goes first
          (open breakers are never skipped forever, or a recovered backend would never be re-admitted)
      └─ none ────────────────────────────────────────────────────► 503 no backend (Retry-After)
    breaker.acquire()  ── refused (its one half-open trial is taken) ──► pick again
    send, wait for the response head
      ├─ failed before the head: record breaker failure
      │     retry on another backend if  (no request byte was sent)                  any method
      │                                  or (reset, no response byte, replay-safe)   GET/HEAD/OPTIONS/Idempotency-Key
      │     and attempts < 1 + max_retries and the retry budget allows,
      │     else 504 (timeout) / 502 (anything else)
      ├─ 502/503 answered, replay-safe, another backend available, budget allows ──► retry there
      └─ otherwise relay the response (5xx counts as a breaker failure, the rest as success)

A replay-safe request's body is read up front when it is small (``retry_body_limit``) so it can be resent;
any other body is streamed, which makes the request replayable only while no byte of it was sent. A POST that
reached a backend is therefore never sent twice.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator

import structlog
from aiohttp import web
from multidict import CIMultiDict

from balancer.backend import Backend, Clock
from balancer.metrics import BalancerMetrics
from balancer.picking import Picker
from balancer.pool import BackendPool
from balancer.retry import RetryBudget
from balancer.settings import BalancerSettings
from shared.breaker import OPEN, BreakerOpen, Permit
from shared.errors import problem_response
from shared.netaddr import append_forwarded_for
from shared.upstream import (
    UpstreamFailure,
    UpstreamResponse,
    buffered_response,
    client_body,
    outgoing_headers,
    relay_response,
    request_target,
)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SERVED_BY = "X-Served-By"
_log = structlog.get_logger("balancer.forwarding")


class _Tried(set[str]):
    """The backends one request has tried, and whether it holds a retry-budget token."""

    holds_token = False


class Balancer:
    def __init__(
        self,
        settings: BalancerSettings,
        pool: BackendPool,
        picker: Picker,
        metrics: BalancerMetrics,
        *,
        clock: Clock = time.monotonic,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.picker = picker
        self.metrics = metrics
        self.budget = RetryBudget(ratio=settings.retry_budget, min_concurrency=settings.retry_min_concurrency)
        self.in_flight = 0
        self.stopping = False
        self._clock = clock

    def on_rotation_change(self, backend: Backend, breaker_state: str | None = None) -> None:
        """Keep ``lb_backend_up`` in step after a health, breaker or drain change.

        Breaker listeners run before the new state is visible on the breaker, so they pass it in.
        """
        up = backend.in_rotation() if breaker_state is None else backend.in_rotation(breaker_state)
        self.metrics.backend_up.labels(backend.id).set(1 if up else 0)

    async def forward(self, request: web.Request) -> web.StreamResponse:
        if self.in_flight >= self.settings.max_in_flight:
            self.metrics.shed.inc()
            return problem_response(
                request,
                503,
                "Service Unavailable",
                "The balancer is at its in-flight limit; retry shortly.",
                type_="overloaded",
                headers={"Retry-After": "1"},
            )
        self.in_flight += 1
        budget = self.budget
        budget.request_started()
        tried = _Tried()
        try:
            replayable = request.method in SAFE_METHODS or "Idempotency-Key" in request.headers
            body: bytes | None = None
            if replayable and request.body_exists:
                length = request.content_length
                if length is not None and length <= self.settings.retry_body_limit:
                    body = await request.read()
                else:
                    replayable = False
            forwarded_for = append_forwarded_for(request.headers.get("X-Forwarded-For"), request.remote or "")
            headers = outgoing_headers(request, forwarded_for=forwarded_for)
            stream = client_body(request) if body is None and request.body_exists else None
            while True:
                choice = self.choose(tried)
                if choice is None:
                    return self._no_backend(request, tried)
                backend, permit = choice
                tried.add(backend.id)
                outcome = await self._attempt(request, backend, permit, headers, body, stream, replayable, tried)
                if outcome is not None:
                    return outcome
                self.metrics.retries.inc()
        finally:
            if tried.holds_token:
                budget.release()
            self.in_flight -= 1
            budget.request_finished()

    def choose(self, tried: set[str]) -> tuple[Backend, Permit] | None:
        """A routable backend not in ``tried`` and a breaker permit for it, or None."""
        healthy = [b for b in self.pool.backends if b.id not in tried and b.health.up and not b.draining]
        skipped: set[str] = set()
        while True:
            # Backend.routable() less the health and drain checks ``healthy`` already made.
            candidates = [b for b in healthy if b.breaker.would_allow() and b.id not in skipped]
            if len(candidates) * 2 < len(healthy):
                return self._panic_choice(healthy)
            if not candidates:
                return None
            due = [backend for backend in candidates if backend.breaker.state == OPEN]
            backend = due[0] if due else self.picker.pick(candidates)
            try:
                return backend, backend.breaker.acquire()
            except BreakerOpen:
                skipped.add(backend.id)

    def _panic_choice(self, healthy: list[Backend]) -> tuple[Backend, Permit] | None:
        """Fewer than half the health-passing backends are routable: the rest have their breakers open.

        One sick backend gets ejected; most of them at once is a fleet-wide condition, typically a shared
        dependency (the database) making every replica answer 503 to writes while it can still serve cached
        reads. Ejecting them would turn that into an outage, or pile all traffic on the last one standing, so,
        like Envoy's panic threshold (50 %), route across every health-passing backend regardless of its
        breaker. The breakers stay open (outcomes of these calls do not count) and close through their own
        trial once the condition clears. With no health-passing backend at all there is nothing to route to.
        """
        if not healthy:
            return None
        self.metrics.panic.inc()
        return self.picker.pick(healthy), Permit(trial=False, settled=True)

    def _may_retry(self, tried: _Tried, *, replay: bool = True) -> bool:
        """Whether to try another backend. ``replay=False``: the request never reached a backend.

        The budget bounds *replays*, the extra load a struggling fleet would get from requests it may already
        have worked on. A request that could not even be sent (connection refused, say, right after a backend
        died) adds no load anywhere, so re-routing it spends no budget; it is still bounded by ``max_retries``.
        """
        if len(tried) > self.settings.max_retries:
            return False
        if not any(b.id not in tried and b.routable() for b in self.pool.backends):
            return False
        if replay and not tried.holds_token:  # a request's first replay takes a budget token until it finishes
            tried.holds_token = self.budget.try_acquire()
            return tried.holds_token
        return True

    async def _attempt(
        self,
        request: web.Request,
        backend: Backend,
        permit: Permit,
        headers: CIMultiDict[str],
        body: bytes | None,
        stream: AsyncIterator[bytes] | None,
        replayable: bool,
        tried: _Tried,
    ) -> web.StreamResponse | None:
        """One try on ``backend``: the response to return, or None to retry on another backend."""
        backend.begin()
        try:
            started = self._clock()
            try:
                response = await backend.upstream.send(
                    request.method,
                    request_target(request),
                    headers,
                    body=body,
                    stream=stream,
                    timeout=self.settings.timeout,
                )
            except UpstreamFailure as failure:
                self._failed(backend, permit, failure.kind, failure.detail)
                unsent = not failure.request_sent
                retry = unsent or (
                    replayable and stream is None and failure.kind == "reset" and not failure.bytes_received
                )
                if retry and self._may_retry(tried, replay=not unsent):
                    return None
                return self._failure_response(request, backend, failure)
            except BaseException:
                backend.breaker.release(permit)
                raise
            backend.latency.observe(self._clock() - started)
            return await self._answered(request, backend, permit, response, replayable, tried)
        finally:
            backend.end()

    async def _answered(
        self,
        request: web.Request,
        backend: Backend,
        permit: Permit,
        response: UpstreamResponse,
        replayable: bool,
        tried: _Tried,
    ) -> web.StreamResponse | None:
        status = response.status
        if status >= 500:
            self._failed(backend, permit, "status", str(status))
        elif permit.trial or backend.breaker.failures:
            backend.breaker.record_success(permit)
        else:  # closed with no failures counted: a success changes nothing, skip pybreaker's locked call
            backend.breaker.release(permit)
        if status in (502, 503) and replayable and self._may_retry(tried):
            if response.complete:
                response.take_body()
                response.release()
            else:
                response.close()
            return None
        served = {SERVED_BY: backend.id}
        if response.complete:
            return buffered_response(response, response_headers=served)
        try:
            return await relay_response(request, response, response_headers=served)
        except UpstreamFailure as failure:  # mid-body: the client connection is already aborted
            self._count_failure(backend, failure.kind, failure.detail)
            out: web.StreamResponse = failure.response
            return out

    def _failed(self, backend: Backend, permit: Permit, kind: str, detail: str) -> None:
        backend.breaker.record_failure(permit)
        self._count_failure(backend, kind, detail)

    def _count_failure(self, backend: Backend, kind: str, detail: str) -> None:
        backend.fail(f"{kind}: {detail}" if detail else kind, self._clock())
        self.metrics.upstream_failures.labels(backend.id, kind).inc()

    def _failure_response(self, request: web.Request, backend: Backend, failure: UpstreamFailure) -> web.Response:
        served = {SERVED_BY: backend.id}
        if failure.kind == "timeout":
            detail = f"The backend did not answer within {self.settings.timeout:g} s."
            return problem_response(request, 504, "Gateway Timeout", detail, headers=served)
        detail = f"The backend failed ({failure.kind})."
        return problem_response(request, 502, "Bad Gateway", detail, type_="upstream-failed", headers=served)

    def _no_backend(self, request: web.Request, tried: set[str]) -> web.Response:
        self.metrics.no_backend.inc()
        waits = [b.breaker.retry_after() for b in self.pool.backends if b.health.up and not b.draining]
        retry_after = max(1, math.ceil(min(waits))) if waits else max(1, math.ceil(self.settings.health_interval))
        detail = "No healthy backend is available." if not tried else "No other healthy backend could take it."
        return problem_response(
            request,
            503,
            "Service Unavailable",
            detail,
            type_="no-backend",
            headers={"Retry-After": str(retry_after)},
        )
