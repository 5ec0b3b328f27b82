"""Patron: customer loyalty and retention for online stores."""

__version__ = "0.1.0"
