"""Roles: the administrators' API over which roles exist, what they grant and who holds them."""
