"""Celery app and thin tasks. Planned: see the audit service issue."""
