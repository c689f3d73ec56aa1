"""Losses (the center cosine loss of DMFE, the smooth loss of FESNet, the FERPlus soft-target losses) live here."""
