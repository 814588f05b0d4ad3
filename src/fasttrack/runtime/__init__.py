"""The model runtime: one interface from validated columns to predictions (:mod:`fasttrack.runtime.base`), its
ONNX Runtime and scikit-learn implementations, the one place that chooses between them
(:func:`fasttrack.runtime.select.open_runtime`), and :class:`~fasttrack.runtime.model.Model`, a loaded model that
validates any input by the feature contract and predicts through its runtime. Nothing is imported here."""
