"""Feature folders. Each one is listed once in `features.registry`."""
