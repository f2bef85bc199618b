"""Monitoring: Prometheus metrics at /metrics, liveness at /health, readiness at /ready."""
