"""The mutation score per module, from `mutmut results --all true` on stdin; exit 1 below the bar.

`make mutation` runs mutmut on SCOPE only (`--scope` prints it) and pipes its results here. A mutant counts as
killed when a test failed on it, or it hung or crashed the tests (mutmut's timeout and segfault: the tests did
not pass); every other result (survived, no tests, suspicious) counts against the score.
Equivalent survivors are listed in docs/mutation.md: they count against it too.
"""

from __future__ import annotations

import fnmatch
import sys
from collections import Counter

BAR = 0.90
# What decides who may notify, what a body is, and where a job moves; of jobs.py, the mover alone.
SCOPE = ("notification_flow.auth.*", "notification_flow.payloads.*", "notification_flow.jsonv2.*",
         "notification_flow.lifecycle.*", "notification_flow.jobs.xǁJobStoreǁ_move__*",
         "notification_flow.jobs.xǁJobStoreǁ_row__*")
KILLED = {"killed", "timeout", "segfault"}


def main() -> int:
    if sys.argv[1:] == ["--scope"]:  # the mutant names mutmut is to run
        print(*SCOPE)
        return 0
    killed: Counter[str] = Counter()
    total: Counter[str] = Counter()
    survivors = []
    for line in sys.stdin:
        name, _, status = line.strip().partition(": ")
        if not any(fnmatch.fnmatchcase(name, pattern) for pattern in SCOPE):
            continue
        module = name.split(".x", 1)[0] + (" (mover)" if ".jobs." in name else "")
        total[module] += 1
        if status in KILLED:
            killed[module] += 1
        else:
            survivors.append(f"  {name}: {status}")
    if not total:
        print("no mutmut results in scope: did `mutmut run` run?")
        return 1
    for module in sorted(total):
        print(f"{module:34} {killed[module]:4} of {total[module]:4} killed ({killed[module] / total[module]:.0%})")
    score = sum(killed.values()) / sum(total.values())
    print(f"{'total':34} {sum(killed.values()):4} of {sum(total.values()):4} killed ({score:.1%}); bar {BAR:.0%}")
    print("not killed (see docs/mutation.md for the equivalent ones):", *survivors, sep="\n")
    return 0 if score >= BAR else 1


if __name__ == "__main__":
    sys.exit(main())
