"""The data layer: engines and the units of work that reach them (db.py), work run once a
transaction commits (commits.py) and what a commit owes the cache (invalidation.py), one
feature reacting to another's writes (hooks.py), cursor pages (pagination.py), exact row
counts kept by triggers (row_counts.py), the field types schemas share (types.py) and the
clock (clock.py).

May import core.cache, core.security, core.concurrency, core.observability, core.config and
core.errors; never the HTTP edge (core.http) or the jobs (core.jobs).
"""
