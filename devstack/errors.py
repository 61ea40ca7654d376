"""What goes wrong starting a local stack.

Exceptions: :class:`StackError` (a child could not be started or made ready), and its
subclass :class:`StackInterrupted` (``stop()`` was called while starting).
"""

from __future__ import annotations


class StackError(Exception):
    """A child could not be started or did not become ready."""


class StackInterrupted(StackError):
    """``stop()`` was called while the stack was starting."""
