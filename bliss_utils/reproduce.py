"""`python -m bliss_utils reproduce [--smoke] [--output-dir DIR]`: run every notebook in order, headless, via papermill.

Before any notebook runs, a preflight checks that the datasets and the backbones' weights are there (locally, unless
``--download`` lets it fetch them), and stops at once with the error that says what to fetch. Executed copies of the notebooks are kept in ``<results>/executed/``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from .config import find_project_root

logger = logging.getLogger(__name__)

EPILOG = """\
examples:
  python -m bliss_utils reproduce                      # the paper's settings (needs the datasets and weights)
  python -m bliss_utils reproduce --download           # the same, fetching missing datasets and weights first
  python -m bliss_utils reproduce --smoke              # tiny random encoders on generated data: tests the pipeline
  python -m bliss_utils reproduce --only 04 06 --output-dir out/run1

Figures go to <output-dir>/figures (default figures/), tables and REPORT.md to <output-dir>/results (default results/),
executed notebooks to <results>/executed/.
"""


OFFLINE_VAR = "BLISS_OFFLINE"  # read by bliss_utils.encoders at call time: use local weights only


class PreflightError(FileNotFoundError):
    """Datasets or weights the paper's run needs are missing (the message says what to fetch)."""


def notebook_paths(root: Path | None = None) -> list[Path]:
    """The numbered notebooks ``notebooks/NN_*.ipynb``, in order."""
    folder = (root or find_project_root()) / "notebooks"
    paths = sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb"))
    if not paths:
        raise FileNotFoundError(f"no notebooks NN_*.ipynb in {folder}")
    return paths


def register(subparsers: Any) -> None:
    """Add the ``reproduce`` subcommand to ``python -m bliss_utils``."""
    p = subparsers.add_parser(
        "reproduce", help="run every notebook in order (papermill) and write figures, tables and results/REPORT.md",
        description="Run notebooks/00-06 headless with the paper's settings (or --smoke), keeping executed copies.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    p.add_argument("--smoke", action="store_true",
                   help="tiny random-weight encoders on generated data: a few minutes on a CPU; tests the pipeline, "
                        "NOT the paper's numbers")  # fmt: skip
    p.add_argument(
        "--output-dir", default="", help="write figures/ and results/ under this folder (default: the repository's)"
    )
    p.add_argument("--data-root", default="",
                   help="folder holding the datasets (default: $BLISS_DATA_DIR or <repo>/data; smoke: generated under "
                        "<output-dir>/data or out/smoke/data)")  # fmt: skip
    p.add_argument("--device", default="", help="torch device (default: CUDA if available, else CPU)")
    p.add_argument(
        "--max-trials", type=int, default=0, help="trials per setting (default 0: all of the paper's protocol)"
    )
    p.add_argument(
        "--preprocess",
        default="default",
        choices=("default", "cifar"),
        help="'cifar': the authors' CIFAR-statistics normalisation for CLIP (default: each backbone's own)",
    )
    p.add_argument(
        "--only",
        nargs="+",
        default=None,
        metavar="NN",
        help="run only the notebooks whose names start with these prefixes, e.g. --only 04 06",
    )
    p.add_argument("--kernel", default="python3", help="Jupyter kernel name (default python3)")
    p.add_argument("--download", action="store_true",
                   help="fetch missing datasets (into the data root) and weights (into each library's cache) before "
                        "running; needs internet (default: local files only)")  # fmt: skip
    p.add_argument("--skip-preflight", action="store_true", help="do not check datasets and weights first")
    p.set_defaults(func=run)


def parameters(exp: Any, device: str = "", max_trials: int = 0, preprocess: str = "default") -> dict[str, Any]:
    """The papermill parameters that make every notebook use ``exp``'s configuration."""
    return {
        "SMOKE": exp.smoke, "DATA_ROOT": str(exp.data_root), "OUTPUT_DIR": str(exp.results_dir.parent),
        "DEVICE": device, "MAX_TRIALS": max_trials, "PREPROCESS": preprocess, "SEED": exp.seed,
    }  # fmt: skip


def preflight(exp: Any, download: bool = False) -> None:
    """Raise :class:`PreflightError` naming every missing dataset (checked first, cheaply) or backbone weights.

    With ``download`` the missing ones are fetched instead (datasets into ``exp.data_root``, weights into each
    library's cache); without it only local files count, so nothing is downloaded.
    """
    from .datasets import DatasetNotFoundError, load_dataset
    from .encoders import WeightsNotFoundError

    problems = []
    for dataset in exp.datasets:
        for split in ("train", "test"):
            try:
                load_dataset(dataset, split, root=exp.data_root, download=download)
            except DatasetNotFoundError as err:
                problems.append(f"- dataset {dataset} ({split}): {err}")
                break
    if problems:  # stop before loading any model: these are quick to report
        raise PreflightError("missing datasets; fetch them, then run again:\n" + "\n".join(problems))
    from .encoders import load_encoder

    # offline while checking: a missing checkpoint is reported at once instead of after the hub's retries
    previous = os.environ.get(OFFLINE_VAR)
    if not download:
        os.environ[OFFLINE_VAR] = "1"
    try:
        for name in dict.fromkeys([exp.encoder, *exp.backbones, exp.image_encoder]):
            try:
                # on the CPU and dropped at once: the notebooks' kernels load their own copies onto the accelerator
                load_encoder(name, device="cpu", preprocess=exp.preprocess)
            except WeightsNotFoundError as err:
                problems.append(f"- weights of {name}: {err}")
    finally:
        if previous is None:
            os.environ.pop(OFFLINE_VAR, None)
        else:
            os.environ[OFFLINE_VAR] = previous
    if problems:
        raise PreflightError(
            "missing weights; fetch them, then run again (without --download, reproduce looks for local files only; "
            "online, `python -m bliss_utils reproduce --download` fetches them into each library's cache):\n"
            + "\n".join(problems)
        )


def run(args: argparse.Namespace) -> int:
    """Run the notebooks as ``args`` says; return 0 on success, 1 with a concise message on failure."""
    import papermill as pm

    from .experiment import make_experiment

    exp = make_experiment(smoke=args.smoke, data_root=args.data_root, output_dir=args.output_dir, device=args.device,
                          max_trials=args.max_trials, preprocess=args.preprocess)  # fmt: skip
    paths = notebook_paths()
    if args.only:
        paths = [p for p in paths if any(p.name.startswith(prefix) for prefix in args.only)]
        if not paths:
            raise ValueError(f"--only {' '.join(args.only)} matches no notebook in notebooks/")
    if not args.skip_preflight:
        preflight(exp, download=args.download)
    exp.executed_dir.mkdir(parents=True, exist_ok=True)
    params = parameters(exp, args.device, args.max_trials, args.preprocess)
    mode = "SMOKE (random weights: tests the pipeline, not the paper)" if exp.smoke else "paper"
    print(f"reproduce: {len(paths)} notebooks, mode {mode}", file=sys.stderr)
    for path in paths:
        out = exp.executed_dir / path.name
        started = time.perf_counter()
        print(f"  {path.name} ...", file=sys.stderr, flush=True)
        try:
            pm.execute_notebook(
                str(path),
                str(out),
                parameters=params,
                kernel_name=args.kernel,
                cwd=str(find_project_root()),
                progress_bar=False,
                request_save_on_cell_execute=True,
            )
        except pm.PapermillExecutionError as err:
            print(f"error: {path.name} failed in cell {err.exec_count}: {err.ename}: {err.evalue}\n"
                  f"  the executed copy with the full traceback: {out}", file=sys.stderr)  # fmt: skip
            return 1
        print(f"  {path.name} done in {time.perf_counter() - started:.0f} s -> {out}", file=sys.stderr)
    print(
        f"figures: {exp.figures_dir}\ntables:  {exp.results_dir}\nreport:  {exp.results_dir / 'REPORT.md'}",
        file=sys.stderr,
    )
    return 0
