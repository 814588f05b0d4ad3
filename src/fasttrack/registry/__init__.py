"""Registry stage."""
