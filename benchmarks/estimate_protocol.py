"""Estimate a notebook's time for every trial of the protocol from a run that did a few trials per setting.

    python benchmarks/estimate_protocol.py out/rehearsal2/results --notebook 04_main_results \
        --trials-table table1_trials
    python benchmarks/estimate_protocol.py out/r05/results --notebook 05_ablations --trials-table ablation_trials

Reads the run's ``run_times.csv`` (the notebook's wall time) and the trials table it wrote (``evaluate_grid`` rows,
whose ``seconds`` hold each method's time on each trial, its per-trial fits included). The estimate scales each
setting's measured per-trial seconds (per encoder and method) to the protocol's trial count
(``splits.paper_settings``) and adds the rest of the notebook's wall time (loading, shared fits, tables, figures)
once. Printed per setting and method, then in total.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from bliss_utils.datasets import splits


def estimate(trials: pd.DataFrame, wall_seconds: float) -> tuple[pd.DataFrame, float, float]:
    """(measured and full-protocol seconds per setting, encoder and method; the notebook's other seconds; the total)."""
    protocol = {name: len(t) for name, t in splits.paper_settings(sorted(set(trials["dataset"])), 0).items()}
    per = trials.groupby(["setting", "encoder", "method"], as_index=False).agg(
        seconds=("seconds", "sum"), runs=("trial", "nunique")
    )
    # settings outside the protocol (05's close pairs) run as they are whatever the trial limit: counted as measured
    per["protocol_trials"] = per["setting"].map(protocol).fillna(per["runs"]).astype(int)
    per["full_seconds"] = per["seconds"] / per["runs"] * per["protocol_trials"]
    other = wall_seconds - float(trials["seconds"].sum())
    return per, other, other + float(per["full_seconds"].sum())


def main() -> None:
    """Print the estimate for one notebook of one run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="the run's results folder (holds run_times.csv and the tables)")
    parser.add_argument("--notebook", default="04_main_results", help="notebook name in run_times.csv")
    parser.add_argument("--trials-table", default="table1_trials", help="the trials CSV the notebook wrote")
    args = parser.parse_args()
    times = pd.read_csv(args.results / "run_times.csv").set_index("notebook")
    if args.notebook not in times.index:
        raise SystemExit(
            f"{args.results / 'run_times.csv'} has no row for {args.notebook!r}; it times "
            f"{', '.join(times.index)}: pass one of them with --notebook"
        )
    wall = float(times.loc[args.notebook, "seconds"])
    trials_path = args.results / f"{args.trials_table}.csv"
    if not trials_path.is_file():
        raise SystemExit(f"no {trials_path}: pass the trials table that {args.notebook} wrote with --trials-table")
    trials = pd.read_csv(trials_path)
    if "seconds" not in trials:
        raise SystemExit(f"{args.trials_table}.csv has no seconds column: run the notebook with this version first")
    per, other, total = estimate(trials, wall)
    with pd.option_context("display.width", 160, "display.max_rows", 200):
        print(per.sort_values("full_seconds", ascending=False).round(1).to_string(index=False))
    print(
        f"{args.notebook}: measured {wall:.0f} s with {trials.groupby('setting')['trial'].nunique().sum()} trials "
        f"over {trials['setting'].nunique()} settings; outside the trials {other:.0f} s; every trial of the "
        f"protocol: about {total:.0f} s ({total / 3600:.1f} h)"
    )


if __name__ == "__main__":
    main()
