"""The HTTP routes, one router per API: the briefs' ``/predict``, MLflow's ``/invocations``, V2, operations."""
