"""The ``payments`` command (CONTRACT §13)."""
