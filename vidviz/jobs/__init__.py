"""Split-level work: the precompute store and quality scoring (resumable, sharded)."""
