"""Exporting fitted pipelines to ONNX: the conversion and its converter patches (:mod:`fasttrack.export.onnx`),
and the check that the graph agrees with its pipeline before it may serve (:mod:`fasttrack.export.check`).
Registration calls :func:`fasttrack.export.check.export_to_folder`; inference lives in :mod:`fasttrack.runtime`."""
