"""Readers for the standard video anomaly detection layouts (UCSD, Avenue, ShanghaiTech, UCF-Crime)."""

from vigil.datasets.avenue import read_avenue
from vigil.datasets.base import Clip, DatasetLayoutError
from vigil.datasets.shanghaitech import read_shanghaitech
from vigil.datasets.ucf_crime import read_ucf_crime, snippet_scores_to_frames
from vigil.datasets.ucsd import read_ucsd

__all__ = [
    "Clip",
    "DatasetLayoutError",
    "read_ucsd",
    "read_avenue",
    "read_shanghaitech",
    "read_ucf_crime",
    "snippet_scores_to_frames",
]
