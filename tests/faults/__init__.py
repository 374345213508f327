"""Fault tests: the DESIGN.md §2 promises with real worker, Redis and Kafka processes killed,
paused and restarted (run alone with ``pytest -m faults``)."""
