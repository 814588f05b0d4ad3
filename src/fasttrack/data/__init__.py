"""Data stage."""
