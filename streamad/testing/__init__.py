"""Stand-in extractors for tests and examples (no backbone, deterministic, fast)."""
