"""Incident priority: a transparent 0-100 score, its admin-configurable weights, and the
set-based recompute that stores it on incidents (SPEC §12)."""
