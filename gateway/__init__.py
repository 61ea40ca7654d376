"""The ``Gateway`` port, its adapters, and the gateway simulator service."""
