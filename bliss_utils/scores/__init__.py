"""Anomaly scorers on precomputed embeddings: BLISS (bliss.py) and the methods Table 1 compares it with."""
