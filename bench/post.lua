-- wrk script: POST one JSON record. The body defaults to the sample model's two features; WRK_BODY overrides it
-- (bench/serving.py sets it per model and server, e.g. MLflow's {"dataframe_records": [...]}).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = os.getenv("WRK_BODY") or '{"feature_1": 5.3, "feature_2": 2.1}'
-- WRK_API_KEY (bench/serving.py's fasttrack-keys server): sent as a bearer token, as a client with a key does.
local key = os.getenv("WRK_API_KEY")
if key and key ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. key
end
