"""Small shared building blocks the domain packages reuse (pagination, types, request
helpers)."""
