"""Thin activities that call the ``Gateway`` port."""
