"""Batch scoring: files in, predictions out, streaming in flat memory (:mod:`fasttrack.batch.score`).

:mod:`fasttrack.batch.writers` writes the output formats. Nothing is imported here.
"""
