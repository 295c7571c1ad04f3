"""Celery workers: celery_app.py (the app, built from settings), tasks.py (thin tasks), runtime.py (per-process model
cache, one audit under a renewed lease, jobs)."""
