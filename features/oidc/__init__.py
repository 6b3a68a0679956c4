"""OpenID Connect sign-in: accounts signed in and linked through external providers."""
