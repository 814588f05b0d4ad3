"""Monitoring past one process: the inference log (its layout, writer and reader), drift statistics, estimated
performance, and the reports drawn from them. The server writes the log (:mod:`fasttrack.serving` calls the writer);
the CLI and the Python API read it. Nothing here imports the web stack.
"""
