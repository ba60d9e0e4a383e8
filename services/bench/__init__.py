"""End-to-end scoring benchmark against the limit of the machine (``vigil bench``)."""

from .run import BenchResult, bare_encoder_fps, run_bench

__all__ = ["BenchResult", "bare_encoder_fps", "run_bench"]
