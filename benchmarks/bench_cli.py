"""Wall time of a cached `charforge emote` and of a usage error, each against `charforge --version`.

    python benchmarks/bench_cli.py [--repeats 7] [--steps 10]

Each figure is one fresh process of the console entry point (`python -c "...main()"`, as the
installed script runs it), so imports are paid every time exactly as a user pays them. Setup (not
timed): a temporary workspace, a character created and one emotion rendered once. Then the three
commands are run in interleaved rounds: `--version` (the floor: Python, typer and charforge's CLI
modules), `emote mira joy=0.8` (answered from the state cache), and `generate --scheduler bogus`
(a usage error). Printed: the median wall time of each and the median per-round ratio to
`--version` (issue #19's target: a cached emote within 1.5x of it and under 1 s on a quiet machine).
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
ENTRY = "from charforge.cli.main import main; main()"


def run(args: list[str], env: dict[str, str], expect: int) -> float:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", ENTRY, *args], env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != expect:
        raise SystemExit(f"{' '.join(args)} exited {done.returncode}, expected {expect}: {done.stderr.strip()}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=10, help="identity steps of the benchmark character (setup only)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "CHARFORGE_HOME": tmp, "HF_HUB_OFFLINE": "1"}
        card = Path(tmp) / "cards"
        card.mkdir()
        (card / "mira.toml").write_text(
            f'name = "mira"\nprompt = "{PROMPT}"\nseed = 7\n\n[settings.identity]\nsteps = {args.steps}\n'
        )
        print("setup: importing the character and rendering joy=0.8 once (not timed) ...", flush=True)
        run(["import", str(card)], env, 0)
        run(["emote", "mira", "joy=0.8"], env, 0)

        commands = {
            "--version": (["--version"], 0),
            "cached emote": (["emote", "mira", "joy=0.8"], 0),
            "usage error": (["generate", "--prompt", "x", "--out", f"{tmp}/o.png", "--scheduler", "bogus"], 2),
        }
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.repeats):
            for name, (argv, code) in commands.items():
                times[name].append(run(argv, env, code))

    floor = times["--version"]
    print(f"{'command':<14} {'median s':>9} {'x --version':>12}   ({args.repeats} rounds, interleaved)")
    for name, values in times.items():
        ratio = statistics.median(v / f for v, f in zip(values, floor))
        print(f"{name:<14} {statistics.median(values):>9.3f} {ratio:>12.2f}")


if __name__ == "__main__":
    main()
