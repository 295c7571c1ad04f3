"""Scores back where the traces came from: Phoenix annotations and OpenTelemetry evaluation events (``phoenix``).
Pure over an ``AuditReport``; posting is optional and only to a URL the user gives."""
