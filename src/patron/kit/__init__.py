"""Shared building blocks: money, clock, pagination, text validation."""
