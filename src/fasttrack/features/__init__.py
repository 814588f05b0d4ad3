"""The feature contract: one table of value rules, and the drivers that apply it to every kind of input.

- :mod:`fasttrack.features.rules`: what any value means for a numeric, boolean or categorical feature (missing
  markers, text, numbers as text, booleans, category text, NaN and infinity): the one owner of that meaning.
- :mod:`fasttrack.features.frames`: pandas frames (training, evaluation, promotion).
- :mod:`fasttrack.features.arrow`: Arrow batches (batch scoring).
- :mod:`fasttrack.features.records`: single records (JSON and CSV bodies, V2 tensors, query strings).
- :mod:`fasttrack.features.openapi`: the JSON schema of a record, for the server's OpenAPI document.
- :mod:`fasttrack.features.columns`: the model input they all give (float arrays and categorical columns).

Every driver gives the same model input for the same values; property tests feed generated values of every
kind through all three and compare. Nothing is imported here, so that importing a driver stays cheap.
"""
