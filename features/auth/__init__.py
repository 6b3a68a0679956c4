"""Auth: registration, login, refresh-token rotation and logout."""
