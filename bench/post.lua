-- wrk script: POST one JSON record. The body defaults to the sample model's two features; WRK_BODY overrides it
-- (bench/serving.py sets it per model and server, e.g. MLflow's {"dataframe_records": [...]}).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = os.getenv("WRK_BODY") or '{"feature_1": 5.3, "feature_2": 2.1}'
