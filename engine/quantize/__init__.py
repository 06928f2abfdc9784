"""Quantized model versions: ``convert`` (int8 or float16 weights, or full int8 with
calibration) and its report. See docs/quantization.md."""

from engine.quantize.convert import REPORT_FILE, convert, format_report
from engine.quantize.rewrite import quantize_per_channel, quantize_weights

__all__ = ["REPORT_FILE", "convert", "format_report", "quantize_per_channel", "quantize_weights"]
