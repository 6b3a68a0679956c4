"""Shared machinery every feature builds on; it knows no feature.

Folders by concern, each importing only what lies below it (pyproject.toml's import-linter
contracts check this on every `make lint`):

    core/http/           the HTTP edge: middleware, dependencies, rate limits, response caching,
                         docs, the published contract, health, metrics endpoint
    core/jobs/           background jobs: declare, enqueue, the queue's SQL, the worker, mail
    core/data/           the database: engines, units of work, commit hooks, feature hooks,
                         cursor pages, row counts, what a commit owes the cache, field types
    core/cache.py        the cache store (Redis or memory): versioned tags, signed values
    core/security.py     password hashing and tokens, pure functions
    core/oidc.py         OpenID Connect providers: discovery, keys, code exchange, ID tokens
    core/concurrency.py  a worker's requests in progress, and handing a place on while waiting
    core/observability/  metrics, logging, tracing, masking: instruments anything may use
    core/config.py       settings                 core/errors.py   the error vocabulary

Left flat on purpose: config and errors (every layer and feature reads them), cache, security,
oidc and concurrency (one module each, each a layer of its own).
"""
