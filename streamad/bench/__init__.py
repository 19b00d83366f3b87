"""Benchmarks that print figures (throughput, engine cost, HNSW recall, soak): measured, never asserted."""
