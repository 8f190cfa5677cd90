"""Review: decision vocabularies and tiers, the append-only decision history, review status, queues, progress."""
