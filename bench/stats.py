"""The few statistics the report needs: percentiles of one run, medians across runs."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile: a value that was actually observed, never an interpolation."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def median(values: Sequence[float]) -> float:
    finite = [value for value in values if not math.isnan(value)]
    return statistics.median(finite) if finite else math.nan


def spread(values: Sequence[float]) -> tuple[float, float]:
    """Smallest and largest of the runs, shown beside each median so the reader sees the noise."""
    finite = [value for value in values if not math.isnan(value)]
    return (min(finite), max(finite)) if finite else (math.nan, math.nan)
