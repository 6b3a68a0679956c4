"""The HTTP edge: what stands between a request and a service. Request-scoped dependencies
(deps.py), rate limits (ratelimit.py), conditional GETs and cached responses (caching.py), the
middleware that sees the raw request (middleware.py, security_headers.py), the published
contract and its pages (openapi.py, oauth2.py, docs.py), the probes (health.py) and the
metrics endpoint with tracing set-up (observability.py).

May import everything else in core; nothing in core imports it.
"""
