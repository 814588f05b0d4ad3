"""What FastTrack writes where in MLflow: the alias it serves, the tags and artifacts a run and a version carry.

One place for the names that recording a run, registering a version, promoting and describing one all read or
write (docs/architecture.md, "Tracking layout", shows the whole layout).
"""

from __future__ import annotations

#: The alias a server follows by default, and the one a first registered version gets.
CHAMPION = "champion"
#: Version tags: the metric promotion compares, and its value on the version's own held-out rows.
TAG_PRIMARY = "fasttrack.primary_metric"
TAG_PRIMARY_VALUE = "fasttrack.primary_metric_value"
#: Run tags of the training data's lineage: ``fasttrack.data.source``, ``.fingerprint``, ``.rows``, ``.etag``, ...
TAG_DATA_PREFIX = "fasttrack.data."
#: Run tags recording the ONNX export stored with the model: its status, and why when it is not ``ok``.
TAG_ONNX = "fasttrack.onnx"
TAG_ONNX_REASON = "fasttrack.onnx.reason"
#: Run tags: the process recording the run (``fasttrack.registry.liveness.Owner``), so that a later run can end it
#: as ``KILLED`` once that process is gone, and why it was ended so.
TAG_OWNER = "fasttrack.owner"
TAG_ABANDONED = "fasttrack.abandoned"
#: Registered-model tags: one per event of the alias history (``<UTC time>-<random>``, JSON), and one per
#: contender for an alias's lock while a move is under way (``<alias>.<id>``).
TAG_ALIAS_HISTORY = "fasttrack.alias_history."
TAG_ALIAS_LOCK = "fasttrack.alias_lock."
#: The training run's held-out test part (features and target), for champion/challenger comparisons.
HOLDOUT_ARTIFACT = "reports/holdout.parquet"
#: The rows the training run's model was fitted on, as content hashes (``fasttrack.training.split.TrainingRows``).
TRAIN_ROWS_ARTIFACT = "reports/train_rows.parquet"
