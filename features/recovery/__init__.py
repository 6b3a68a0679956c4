"""Password recovery and email verification: one-time links sent by mail."""
