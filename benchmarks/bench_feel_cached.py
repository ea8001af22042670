"""Wall time of a cached `Character.feel` from Python: the cache-first path against the engine path.

    python benchmarks/bench_feel_cached.py [--repeats 5] [--steps 10]

Each figure is one fresh process (imports paid as a script pays them). Setup (not timed): a temporary
workspace, Mira created with the shipped model and joy=0.8 rendered once. Then, in interleaved rounds:
`import charforge` (the floor), `mira.feel(joy=0.8)` (cache-first: `cached_picture` answers before the
engine is imported) and `charforge.character.feel.feel(mira, joy=0.8)` (the engine path the handle took
before: imports torch and diffusers, then finds the same cached file). Printed: the median wall time of
each, the median per-round ratio to the floor, and engine path / cache-first.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "portrait of a girl with long red hair, green eyes, fair skin, blue outfit, pink background"
OPEN = "import sys; from charforge import Forge; mira = Forge.open(sys.argv[1]).get('mira'); "
VARIANTS = {
    "import charforge": "import sys, charforge",
    "cache-first feel": OPEN + "assert mira.feel(joy=0.8).cached",
    "engine path feel": OPEN + "from charforge.character.feel import feel; assert feel(mira, joy=0.8).cached",
}
SETUP = """
import sys
from charforge import Forge
from charforge.character.identity import build_identity
with Forge.open(sys.argv[1]) as forge:
    mira = forge.create("mira", prompt=sys.argv[2], seed=7, build_identity=False)
    build_identity(mira, {"steps": int(sys.argv[3])})
    mira.feel(joy=0.8)
"""


def run(code: str, *args: str, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code, *args], env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10, help="identity steps (setup only)")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        print("setup: creating Mira and rendering joy=0.8 once (not timed) ...", flush=True)
        run(SETUP, tmp, PROMPT, str(args.steps), env=env)
        times: dict[str, list[float]] = {name: [] for name in VARIANTS}
        for _ in range(args.repeats):
            for name, code in VARIANTS.items():
                times[name].append(run(code, tmp, env=env))
    floor = times["import charforge"]
    print(f"{'variant':<18} {'median s':>9} {'x import':>9}   ({args.repeats} rounds, interleaved)")
    for name, values in times.items():
        ratio = statistics.median(v / f for v, f in zip(values, floor))
        print(f"{name:<18} {statistics.median(values):>9.3f} {ratio:>9.2f}")
    speedup = statistics.median(e / c for e, c in zip(times["engine path feel"], times["cache-first feel"]))
    print(f"engine path / cache-first: {speedup:.1f}x")


if __name__ == "__main__":
    main()
