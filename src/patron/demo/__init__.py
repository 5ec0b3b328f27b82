"""Demo data: a synthetic cosmetics shop with documented ground truth (see docs/generator.md)."""
