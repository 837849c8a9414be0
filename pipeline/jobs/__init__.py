"""The life of one indexing run: lease, heartbeat, progress, publish, failure."""
