"""One (implementation, scenario, repeat) in a fresh interpreter.

    python -m benchmarks.child --impl shoal --scenario map --config '{"map_n": 20000, ...}'

Prints one line ``@@RESULT {json}`` on stdout; everything else goes to stderr.
The runner (run.py) starts this with the repository root on PYTHONPATH so
that the workers of either implementation can import ``benchmarks.tasks``.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import os
import sys
import time
import traceback

RESULT_MARK = "@@RESULT "


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--impl", required=True)
    ap.add_argument("--scenario", required=True)
    ap.add_argument("--config", required=True, help="JSON: sizes and timeout")
    a = ap.parse_args(argv)
    cfg = json.loads(a.config)
    timeout = float(cfg.get("timeout", 300))
    # the scenario's own deadline comes first, so that it can say how far it got;
    # the runner's hard kill comes `timeout` seconds after the start
    margin = min(30.0, max(5.0, 0.1 * timeout))
    cfg["deadline"] = time.time() + timeout - margin
    # if we are still alive shortly before the hard kill, show where we hang
    faulthandler.dump_traceback_later(max(1.0, timeout - margin / 3), exit=False)

    from benchmarks.scenarios import SCENARIO_FUNCS, Result, kill_descendants

    res = Result()
    try:
        SCENARIO_FUNCS[a.scenario](a.impl, cfg, res)
    except BaseException as e:
        res.error = f"{type(e).__name__}: {e}"[:1000]
        res.traceback = traceback.format_exc()[-4000:]
        traceback.print_exc()
        kill_descendants()
        res.hard_exit = True
    faulthandler.cancel_dump_traceback_later()
    res.extra["loadavg_1m_end"] = round(os.getloadavg()[0], 2)
    sys.stdout.write(RESULT_MARK + json.dumps(res.as_dict()) + "\n")
    sys.stdout.flush()
    if res.hard_exit:
        sys.stderr.flush()
        os._exit(0)


if __name__ == "__main__":
    main()
