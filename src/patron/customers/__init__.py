"""Customer profiles, consent and the touchpoint log."""
