"""Signed webhook notifications to the ministries (SPEC §7)."""
