"""The HTTP API: app factory, routes, auth, errors."""
