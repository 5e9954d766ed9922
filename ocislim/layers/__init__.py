"""Layer merge, safe extraction and deterministic layer writing."""
