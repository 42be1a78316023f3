"""Calibration data: corpora, tokenization, seeded sampling and activation statistics,
collected once and shared by every pass and format that needs them."""
