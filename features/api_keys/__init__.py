"""API keys: a credential of its own for scripts and integrations, limited to what it needs."""
