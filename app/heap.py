"""How a long-running process (``rrg serve``, ``rrg worker``) sets up Python's collector."""

from __future__ import annotations

import gc


def settle() -> None:
    """What is alive at start-up (modules, the app) lives for the whole process: move it
    out of the collector's way, and collect young objects less often (list pages and sweep
    batches allocate a lot): otherwise each full collection walks every object the modules
    hold, and a sweep batch triggers several."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 20, 20)
