"""Losses (the center cosine loss of DMFE, the smooth loss of FESNet) live here."""
