"""Delivery counters of this process, for the metrics endpoint (a scrape reads
``COUNTERS.snapshot()``; one set per process, as Prometheus expects)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field


@dataclass
class DeliveryCounters:
    delivered: int = 0  # attempts answered 2xx
    retried: int = 0  # failed attempts with another one scheduled
    failed: int = 0  # deliveries that ended failed (schedule exhausted, 410)
    blocked: int = 0  # attempts refused by the egress check
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(
        self, *, delivered: int = 0, retried: int = 0, failed: int = 0, blocked: int = 0
    ) -> None:
        with self._lock:
            self.delivered += delivered
            self.retried += retried
            self.failed += failed
            self.blocked += blocked

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {
                "delivered": self.delivered,
                "retried": self.retried,
                "failed": self.failed,
                "blocked": self.blocked,
            }


COUNTERS = DeliveryCounters()
