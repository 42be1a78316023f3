"""The bottom layer: the model IR, pure tensor math (number formats), errors and the
recipe schema helpers. Nothing here imports any other inferc package."""
