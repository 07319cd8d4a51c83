#!/usr/bin/env python
"""Run the deterministic cluster simulation over many seeds.

    python scripts/simulate.py --seeds 0:5000            # report failing seeds
    python scripts/simulate.py --seeds 0:5000 --jobs 4   # in 4 processes
    python scripts/simulate.py --seed 17 --verbose       # replay one, with its trace
    python scripts/simulate.py --seeds 0:500 --profile large

Profiles: small, default (the suite's), large.  Exits non-zero when any seed
fails.  A seed replays exactly, in any process.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from collections.abc import Iterable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from shoal.testing.simulation import PROFILES, Simulation, SimulationFailure


def _run(args: tuple[int, str, bool]) -> tuple[int, str | None, dict[str, int]]:
    seed, profile, shared = args
    try:
        stats = Simulation(seed, profile, shared_scatter_keys=shared).run()
    except SimulationFailure as e:
        return seed, str(e), {}
    return seed, None, stats


def parse_range(text: str) -> range:
    start, _, stop = text.partition(":")
    if not stop:
        return range(int(start), int(start) + 1)
    return range(int(start or 0), int(stop))


def run_many(seeds: Iterable[int], profile: str, jobs: int, show_all: bool, shared: bool = False) -> int:
    failed: list[int] = []
    totals: dict[str, int] = {}
    n = 0
    start = time.perf_counter()
    work = [(seed, profile, shared) for seed in seeds]
    if jobs > 1:
        with multiprocessing.Pool(jobs) as pool:
            results = pool.imap(_run, work, chunksize=8)
            for seed, error, stats in results:
                n += 1
                _tally(seed, error, stats, failed, totals, show_all)
    else:
        for item in work:
            seed, error, stats = _run(item)
            n += 1
            _tally(seed, error, stats, failed, totals, show_all)
    elapsed = time.perf_counter() - start
    print(f"{n} seeds in {elapsed:.1f} s, {len(failed)} failed"
          + (f": {failed}" if failed else ""))
    print("totals: " + ", ".join(f"{k}={v}" for k, v in sorted(totals.items())))
    return 1 if failed else 0


def _tally(seed: int, error: str | None, stats: dict[str, int], failed: list[int],
           totals: dict[str, int], show_all: bool) -> None:
    if error is not None:
        failed.append(seed)
        first = error.splitlines()[0]
        print(f"FAIL seed {seed}: {first}" if not show_all else error, flush=True)
    for k, v in stats.items():
        totals[k] = totals.get(k, 0) + v


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0:1000", help="a range START:STOP (default 0:1000)")
    parser.add_argument("--seed", type=int, help="run this one seed")
    parser.add_argument("--profile", default="default", choices=sorted(PROFILES))
    parser.add_argument("--jobs", type=int, default=1, help="processes to run seeds in")
    parser.add_argument("--verbose", action="store_true", help="print every event (with --seed)")
    parser.add_argument("--full", action="store_true", help="print each failure in full")
    parser.add_argument("--shared-scatter-keys", action="store_true",
                        help="scatter equal data under one key (exposes a known race)")
    args = parser.parse_args(argv)
    if args.seed is not None:
        sim = Simulation(args.seed, args.profile, verbose=args.verbose,
                         shared_scatter_keys=args.shared_scatter_keys)
        try:
            stats = sim.run()
        except SimulationFailure as e:
            print(f"\nFAILED: {e.message}" if args.verbose else str(e))
            print(f"digest {sim.digest()}")
            return 1
        print(f"seed {args.seed} passed: " + ", ".join(f"{k}={v}" for k, v in sorted(stats.items())))
        print(f"digest {sim.digest()}")
        return 0
    return run_many(parse_range(args.seeds), args.profile, args.jobs, args.full,
                    args.shared_scatter_keys)


if __name__ == "__main__":
    sys.exit(main())
