"""Mail: the outbox (written first, delivered by a queue task with retries), SMTP transport, message texts,
who may receive a project's mail, and AI alert delivery."""
