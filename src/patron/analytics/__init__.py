"""Retention analytics: how a merchant measures loyalty (DOMAIN.md section 3)."""
