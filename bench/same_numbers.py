"""Proves that a change meant not to change learning changes no number.

Runs a fixed set of short `run.py` commands (sync and EnvPool backends, every optimizer,
LayerNorm, lr decay, advantage normalisation, K seeds) and records every evaluation's
returns and losses. `--record` writes them as the reference; without it, the script
runs the same commands and compares float for float with the reference.

    .venv/bin/python bench/same_numbers.py --record   # on the commit before the change
    .venv/bin/python bench/same_numbers.py            # after it: exits 1 on any difference

Float rounding differs between CPU types (vector instruction sets), so a reference
holds only on the machine type that recorded it; the file names that machine.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "bench" / "results" / "same_numbers.json"
QUIET = ["logger=none", "trainer.progress_bar=false"]
# Env options carry their own settings since issue 18; these keys pin the values the reference's
# commands ran with (the root config's), so its numbers (commit 3382c98) still apply.
HALFCHEETAH_BEFORE_ITS_SETTINGS = ["lr=7e-4", "network.log_std_init=0.0", "trainer.num_envs=16"]
PENDULUM_BEFORE_ITS_SETTINGS = [
    *HALFCHEETAH_BEFORE_ITS_SETTINGS,
    "gamma=0.99",
    "algo.n_steps=8",
    "algo.gae_lambda=0.95",
    "algo.vf_coef=0.5",
    "algo.lr_decay=false",
    "network.sde=false",
    "network.ortho_init=true",
]  # a command's own keys come after these, and win
# Hopper's option took the settings of its wide sweep after the reference (issue 32).
HOPPER_BEFORE_ITS_SWEEP = [
    "lr=7e-4",
    "gamma=0.99",
    "algo.lr_decay=true",
    "algo.n_steps=8",
    "algo.gae_lambda=0.95",
    "algo.ent_coef=0.0",
    "algo.max_grad_norm=0.5",
    "network.width=64",
    "trainer.num_envs=8",
]
COMMANDS: dict[str, list[str]] = {
    "halfcheetah-envpool": [
        "env=halfcheetah",
        "env.backend=envpool",
        *HALFCHEETAH_BEFORE_ITS_SETTINGS,
        "trainer.total_steps=30000",
        "trainer.eval_every=10000",
        "trainer.eval_episodes=2",
    ],
    "halfcheetah-sync": [
        "env=halfcheetah",
        "env.backend=sync",
        *HALFCHEETAH_BEFORE_ITS_SETTINGS,
        "trainer.total_steps=30000",
        "trainer.eval_every=10000",
        "trainer.eval_episodes=2",
    ],
    "hopper-preset": [
        "experiment=hopper",
        *HOPPER_BEFORE_ITS_SWEEP,
        "trainer.total_steps=20000",
        "trainer.eval_every=10000",
        "trainer.eval_episodes=2",
        "seed=3",
    ],
    "pendulum-adv-norm": [
        "env=pendulum",
        *PENDULUM_BEFORE_ITS_SETTINGS,
        "algo.normalize_advantage=true",
        "trainer.total_steps=20000",
        "trainer.eval_every=5000",
        "trainer.eval_episodes=3",
        "gamma=0.95",
        "lr=1e-3",
    ],
    "pendulum-sgd-layernorm": [
        "env=pendulum",
        *PENDULUM_BEFORE_ITS_SETTINGS,
        "optimizer=sgd",
        "optimizer.momentum=0.9",
        "network.layer_norm=true",
        "network.activation=elu",
        "trainer.total_steps=8000",
        "trainer.eval_every=4000",
        "trainer.eval_episodes=2",
    ],
    "tutorial4": [
        "experiment=tutorial4",
        "trainer.total_steps=6000",
        "trainer.eval_every=3000",
        "trainer.eval_episodes=2",
    ],
    "pendulum-2-seeds": [
        "env=pendulum",
        *PENDULUM_BEFORE_ITS_SETTINGS,
        "n_seeds=2",
        "seed=7",
        "trainer.total_steps=4096",
        "trainer.eval_every=2048",
        "trainer.eval_episodes=2",
    ],
}
KEYS = (
    "eval/return_mean",
    "eval/return_std",
    "loss/actor",
    "loss/critic",
    "loss/entropy",
    "train/episode_return",
    "train/lr",
)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def evaluations(run_dir: Path) -> dict[str, list]:
    """Every evaluation of every result.json under run_dir (one per seed)."""
    found = {}
    for path in sorted(run_dir.rglob("result.json")):
        result = json.loads(path.read_text())
        if "evaluations" in result:
            rel = str(path.parent.relative_to(run_dir)) or "."
            found[rel] = [{k: e.get(k) for k in ("env_steps", *KEYS)} for e in result["evaluations"]]
    return found


def run(name: str, overrides: list[str], root: Path) -> dict:
    run_dir = root / name
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), *overrides, *QUIET, f"hydra.run.dir={run_dir}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed:\n{proc.stderr[-3000:]}")
    print(f"  {name:<24} {time.perf_counter() - start:6.1f} s", flush=True)
    return evaluations(run_dir)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record", action="store_true", help="write the reference instead of comparing")
    parser.add_argument("--only", default="", help="comma-separated command names")
    parser.add_argument("--reference", type=Path, default=REFERENCE)
    args = parser.parse_args()
    names = [n for n in COMMANDS if not args.only or n in args.only.split(",")]
    with tempfile.TemporaryDirectory(prefix="abe-same-") as tmp:
        got = {name: run(name, COMMANDS[name], Path(tmp)) for name in names}
    if args.record:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        args.reference.parent.mkdir(parents=True, exist_ok=True)
        args.reference.write_text(
            json.dumps(
                {
                    "commit": commit.stdout.strip(),
                    "cpu": cpu_model(),
                    "date": time.strftime("%Y-%m-%d"),
                    "commands": {n: COMMANDS[n] for n in names},
                    "runs": got,
                },
                indent=1,
            )
            + "\n"
        )
        print(f"reference written to {args.reference}")
        return 0
    reference = json.loads(args.reference.read_text())
    if reference["cpu"] != cpu_model():
        print(f"note: reference recorded on '{reference['cpu']}', this CPU is '{cpu_model()}'")
    failed = 0
    for name in names:
        same = got[name] == reference["runs"].get(name)
        failed += not same
        print(f"{name:<24} {'same numbers' if same else 'DIFFERENT'}")
        if not same:
            print(
                f"  reference: {json.dumps(reference['runs'].get(name))[:600]}\n"
                f"  now:       {json.dumps(got[name])[:600]}"
            )
    print(f"{len(names) - failed}/{len(names)} commands give the reference's numbers (commit {reference['commit']})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
