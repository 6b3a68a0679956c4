"""Instruments anything in core or a feature may use: Prometheus metrics and their helpers
(metrics.py), the files that add them up across gunicorn workers (metrics_files.py), logging
and the request log (logging.py), masking addresses in logs (masking.py), and OpenTelemetry
tracing (tracing.py). What installs them on the app (the /metrics route, the HTTP metrics
middleware) is the HTTP edge's: core/http/observability.py.

May import only core.config and core.errors.
"""
