"""`make bench`: the integration measured against lean baselines, into docs/benchmarks-results.md.

What the goals are and what the numbers mean for them is prose in docs/benchmarks.md, not code here.

Run `python -m bench` (all benchmarks, then the report) or `python -m bench.report` (only re-render the
report from the last results in bench/results/). Each module does one job:

- bodies.py      realistic json-v2 notification bodies of a given size, scaled from a real transcript
- loadgen.py     the HTTP load generator, run as its own process so it never shares a GIL with a server
- machine.py     the machine, versions and load average the numbers were taken with
- stats.py       percentiles and medians; traffic.py reads the emulator's request counts during a run
- targets.py     starting and stopping the servers under test (ours, and the two gunicorn baselines)
- lean_app.py    the limit: a frameworkless WSGI handler doing only the durable work a notification needs
- bare_app.py    the floor: a Flask endpoint that reads the body and answers 200
- jobrows.py     job rows pre-created through notification_flow.jobs, and a throwaway PostgreSQL schema per run
- ingest.py      webhook ingest: notifications per second and latency, targets interleaved per round
- memory.py      peak RSS of the server while it receives a 200 MB transcript
- reconcile.py   cronjob.py recovering lost notifications, against original_loop.py
- submission.py  client.py submitting short files, and end-to-end latency through the webhook
- variants.py    DIAGNOSTIC ONLY: our server with one change applied in memory, to measure what it costs or buys
- report.py      docs/benchmarks-results.md from the raw results (summary.py); figure.py its picture
- history.py     routine work against history size (1,000 to 1,000,000 finished jobs); history_report.py
                 its own page, docs/benchmarks-history.md; rss.py a process's own peak memory
"""
