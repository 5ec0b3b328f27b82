"""Listening: surveys (NPS, CSAT, CES, expectation vs experience), scores, reviews."""
