"""The mail benchmark runs and reports sane figures (tiny sizes: it must not rot)."""

from __future__ import annotations

import pytest

from benchmarks.mail import latency_bench, parse_bench, sample_corpus

from .dovecot import DOVECOT


def test_parse_bench_covers_the_sample_corpus() -> None:
    figures = parse_bench(seconds=0.05)
    assert figures.corpus == len(sample_corpus()) > 20
    assert figures.ours_per_second > 0 and figures.stdlib_per_second > 0


@pytest.mark.slow
async def test_latency_bench_times_every_mail() -> None:
    if not DOVECOT.exists():
        pytest.skip("Dovecot is not installed")
    figures = await latency_bench(5, rate_per_second=50)
    assert figures.mails == 5
    assert 0 < figures.p50_ms <= figures.p99_ms <= figures.max_ms < 5000
