"""Synthetic OMG-Empathy-layout data: a real face, a drawn body and a spoken story that all follow valence.

See docs/architecture.md (Synthetic data) and ``empathy synth --help``.
"""

from synthetic.curves import expressed_valence, valence_curve
from synthetic.dataset import generate_clip, generate_dataset

__all__ = ["expressed_valence", "generate_clip", "generate_dataset", "valence_curve"]
