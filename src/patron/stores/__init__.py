"""Stores (tenants) and their API keys."""
