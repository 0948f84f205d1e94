"""Cache statistics: Prometheus counters for scraping, plain integers for the heartbeat the dashboard reads."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter


@dataclass
class CacheStats:
    registry: CollectorRegistry
    hits: dict[str, int] = field(default_factory=lambda: {"l1": 0, "l2": 0})
    misses: dict[str, int] = field(default_factory=lambda: {"l1": 0, "l2": 0})
    stale_served: int = 0
    redis_commands: int = 0

    def __post_init__(self) -> None:
        requests = Counter(
            "cache_requests",
            "Cache lookups by level and result.",
            ("level", "result"),
            registry=self.registry,
        )
        self._hit = {level: requests.labels(level, "hit") for level in ("l1", "l2")}
        self._miss = {level: requests.labels(level, "miss") for level in ("l1", "l2")}
        self._redis = Counter("cache_redis_commands", "Redis round trips made by the cache.", registry=self.registry)

    def hit(self, level: str) -> None:
        self.hits[level] += 1
        self._hit[level].inc()

    def miss(self, level: str) -> None:
        self.misses[level] += 1
        self._miss[level].inc()

    def redis_command(self) -> None:
        self.redis_commands += 1
        self._redis.inc()

    def hit_ratio(self, level: str) -> float:
        total = self.hits[level] + self.misses[level]
        return round(self.hits[level] / total, 4) if total else 0.0

    def snapshot(self) -> dict[str, object]:
        return {
            level: {
                "hits": self.hits[level],
                "misses": self.misses[level],
                "hit_ratio": self.hit_ratio(level),
            }
            for level in ("l1", "l2")
        } | {"stale_served": self.stale_served, "redis_commands": self.redis_commands}
