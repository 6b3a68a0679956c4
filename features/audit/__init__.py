"""The audit log, read by holders of `audit:read`; its retention job. The table and the writer
every feature uses live in core (core/data/audit.py): every feature records events, and
features do not import one another."""
