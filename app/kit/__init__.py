"""Small shared building blocks the domains reuse (pagination, ...)."""
