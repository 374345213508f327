"""Benchmark of the worker (`python -m tests.perf`, `make bench`): not a test, it asserts
nothing about speed; it measures, prints a table and writes JSON.

One run, on topics, groups and Redis key prefixes of its own (removed afterwards):

1. produce: the workload (the test suite's event mix, see `workload`) into four input
   topics of six partitions, before anything consumes it;
2. ceiling (`ceiling`): a bare aiokafka consume -> produce -> commit pass-through of the same
   records with the worker's delivery guarantees: the most this box can do;
3. worker (`worker_run`): `customer-worker run` as a child on the backlog (events/s,
   Redis round trips per event, CPU per 10k events, RSS), then live at a steady rate
   (latency from produce to `customer.updated`);
4. naive (`naive`, `naive_run`): the same work as a per-message FastStream handler, on
   its own copy of the workload's first records;
5. `--memory`: the worker alone over 1M events, RSS after 100k and at the end.

Module names avoid `test_*`: pytest collects nothing here.
"""
