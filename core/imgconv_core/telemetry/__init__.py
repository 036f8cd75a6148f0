"""Metrics and traces shared by the API, the worker and the operator (Prometheus, OpenTelemetry)."""
