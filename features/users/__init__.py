"""Users: the account table, self-service and administration."""
