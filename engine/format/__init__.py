"""The saved-model format: ``model.json`` + ``weights.safetensors`` in a version directory."""

from engine.format.reader import read_model_dir
from engine.format.writer import write_model_dir

__all__ = ["FORMAT_TAG", "read_model_dir", "write_model_dir"]

FORMAT_TAG = "numbaserve/1"
