"""Gymnasium environments with known, adjustable stability, registered as ``qbc/<Name>-v0``."""
