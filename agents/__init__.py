"""Experts (LQR, linear, scripted, SB3) and learners."""
