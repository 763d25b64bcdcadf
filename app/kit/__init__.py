"""Small shared building blocks the domain packages use (types, request helpers)."""
