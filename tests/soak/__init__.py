"""The soak (`make soak`, `python -m tests.soak`): a thousand jobs through every fault at once.

Why: the integration tests prove each recovery path once, alone. Only volume, randomness and overlap show
that the paths compose - that while notifications are dropped, duplicated (half of the copies concurrently,
which is what the emulator's duplicate fault does), delayed and reordered, while 5% of API calls fail with
429 or 503, while server.py is SIGKILLed and restarted, a client dies between submitting and recording, and
two cronjob.py passes overlap, no job is lost, no transcript is written twice or differs from what the API
serves, and no valid notification is refused.

The order of events: start the emulator (in this process) and the servers; submit the jobs with client.py
in chunks, each chunk to one server's WEBHOOK_URL, while a thread kills and restarts servers at moments drawn
from the seeded RNG; between two chunks, submit one job through tests/blackhole.py and SIGKILL that client
once the API lists the job; wait until the API has finished every job; run two `cronjob.py --all` at once;
wait until the emulator has settled every notification; then compare everything with the emulator's truth.
Every random choice (emulator faults, kill moments, downtimes, which chunk the killed client follows) comes
from `--seed`, printed first and last, so a failure can be replayed: the same jobs (the emulator's ids are
seeded too) meet the same faults. Thread and process timing still varies, so a race may take a few replays.

tests/integration/test_soak.py runs the same code with ~40 jobs on each backend. The modules, in the order a run
uses them:

- options.py   the fixed faults and timings, and what varies between runs (jobs, seed, servers)
- prepare.py   a fresh database, the audio files, the servers, the client.py runs the files are split into
- faults.py    the faults we cause ourselves: servers SIGKILLed and restarted, a client killed mid-submission
- phases.py    run_soak: submissions, the API finishing, overlapping cronjobs, notifications settling
- checks.py    every check, counted into the result (each count must be zero), and what was observed
- records.py   what a run records, and SoakResult with its report
- __main__.py  the command line
"""
