"""Shipped recipe presets: `--quant NAME` resolves to NAME.yaml here."""
