"""The task queue: `queue.huey` and the thin task wrappers that call domain functions."""
