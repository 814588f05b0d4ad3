"""Serving stage."""
