"""Load tests: scenarios (steady, burst, reload, mixed) that drive a numbaserve on 127.0.0.1
and print a table of requests, errors by status, req/s and latency percentiles.

Run ``python -m loadtests --help``; ``loadtests.client`` is the load generator, shared with
``benchmarks/server_vs_naive.py``.
"""
