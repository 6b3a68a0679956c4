"""Generated API clients and the script that writes their OpenAPI document."""
