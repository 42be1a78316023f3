"""inferc: model compilation and quantization for LLMs."""

__version__ = "0.1.0"
