"""Local emulator of the Speechmatics batch API (v2), with webhooks and fault injection, for tests and demos.

It follows the Speechmatics documentation (not our integration, which it never imports) so that
real clients - speechmatics-python's BatchClient and CLI, speechmatics-batch's Client/AsyncClient -
work against it unchanged. Start it from a shell::

    python -m emulator --port 8800 --api-key KEY     # prints http://127.0.0.1:8800/v2, stops on SIGTERM/Ctrl-C

or in-process (tests)::

    from emulator import Emulator, EmulatorOptions

    options = EmulatorOptions(api_key="k", processing_seconds=0.2, notify_retry_delays=(0.1, 0.2, 0.3), seed=1)
    with Emulator(options) as emu:         # real threaded HTTP server on 127.0.0.1, free port
        emu.url                            # "http://127.0.0.1:PORT/v2" - give this to the client under test
        emu.job(job_id)                    # dict as GET /v2/jobs/{id} shows it (KeyError if unknown)
        emu.transcript_bytes(job_id)       # exact json-v2 bytes the API serves (KeyError unless done)
        emu.finish(job_id, outcome="done") # end a running job now ("done" | "rejected" | None = natural)
        emu.expire(job_id)                 # expire it now: the API answers 410 afterwards
        emu.stats()                        # request counts, injected faults, rate limiting, peak req/s
        emu.deliveries()                   # every notification attempt: outcome, attempt, duplicate, times
        emu.set_faults(drop_fraction=0.5)  # change fault options at runtime; emu.faults() reads them
        emu.held()                         # with hold_notifications=True: queued attempts [{key, ...}]
        emu.deliver(key)                   # send one held attempt now, remove it: {"outcome": 200 | "error: .."}
        emu.duplicate(key) / emu.drop(key) # send it but keep it held / discard it
        emu.seed                           # the seed in use: pass it back to replay the same faults

Every method also exists over HTTP under ``/_emulator/`` (same bearer auth); see emulator/README.md
for the options table and the behaviour the emulator chooses where the documentation is silent.
"""

from emulator.control import NotRunning
from emulator.options import FAULT_FIELDS, EmulatorOptions
from emulator.runtime import Emulator

__all__ = ["FAULT_FIELDS", "Emulator", "EmulatorOptions", "NotRunning"]
