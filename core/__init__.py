"""Shared machinery: configuration, database, security and errors. Knows no feature."""
