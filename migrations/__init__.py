"""Alembic's environment (env.py), what `make migration` adds to autogenerate
(autogenerate.py) and the squawk check of every migration's SQL (lint.py)."""
