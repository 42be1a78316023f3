"""GGUF: llama.cpp's model file. Writer (IR -> GGUF, with tokenizer), reader (summary for
inspect), spec constants."""

from inferc.formats.gguf.reader import GGUFSummary, TensorSummary, read_gguf_summary
from inferc.formats.gguf.writer import GGUFFileWriter, export_gguf

__all__ = ["GGUFFileWriter", "GGUFSummary", "TensorSummary", "export_gguf", "read_gguf_summary"]
