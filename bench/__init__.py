"""`make bench`: the integration measured against a lean durable handler, into docs/benchmarks-results.md.

The method and the goals are prose in docs/benchmarks.md, not code here. Run `python -m bench` (every
benchmark, then the pages) or `python -m bench.report` (re-render from bench/results/latest.json). Modules:

- bodies.py      realistic json-v2 notification bodies of a given size, scaled from a real transcript
- loadgen.py     the HTTP load generator, run as its own process so it never shares a GIL with a server
- targets.py     starting and stopping the servers under test: ours, and the lean handler (lean_app.py)
- jobrows.py     job rows the server will finish, and a throwaway PostgreSQL schema per run
- ingest.py      webhook ingest: notifications per second and latency, targets interleaved per round
- memory.py      how far a worker's memory rises while it receives a 200 MB transcript
- reconcile.py   cronjob.py recovering lost notifications; submission.py client.py's pacing (traffic.py)
- s3.py          ingest into S3 against local disk, and a 200 MB transcript into S3
- history.py     routine work against history size; history_report.py its page; rss.py a process's peak
- report.py      the results pages; machine.py the machine they were measured on; stats.py medians
"""
