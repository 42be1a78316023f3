"""Readers and writers of model bytes: Hugging Face, GGUF, ONNX, TensorRT."""
