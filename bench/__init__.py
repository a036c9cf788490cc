"""`make bench`: the integration measured against a lean durable handler, into the pages in docs/.

The method and the goals are prose in docs/benchmarks.md, not code here. Run `python -m bench` (every
benchmark, then the pages). Modules:

- bodies.py      realistic json-v2 notification bodies of a given size, scaled from a real transcript
- loadgen.py     the closed-loop load generator, run in a process of its own
- targets.py     the servers under test (ours, and the lean handler of lean_app.py) and the rounds they run in
- jobrows.py     job rows the server will finish, and a throwaway PostgreSQL schema per run
- ingest.py      webhook ingest, and the same into S3 against local disk
- memory.py      how far a worker's memory rises while it receives a 200 MB transcript
- pacing.py      cronjob.py recovering lost notifications, and client.py submitting, at the API's limits
- history.py     an idle reconciler pass against history size, and its page; rss.py a process's peak
- report.py      the results pages; stats.py the median over rounds
"""
