"""`python -m bliss_utils reproduce`: run the notebooks in order, headless (papermill), then assemble REPORT.md.

The notebooks' ``parameters`` cells hold the paper's settings; ``--smoke`` injects the values of
``notebooks/smoke.json`` (the one place smoke settings live) and generates the small datasets they read;
``--rehearsal`` does the same with ``notebooks/rehearsal.json``: the paper's settings on generated data of the real
sizes, with cheap stand-ins at the real encoders' dimensions, to measure time and memory. Before any notebook runs, a
preflight (``bliss_utils.running.preflight``) checks that the datasets and weights the notebooks name are there.
Each notebook runs in its own short-lived process (``bliss_utils.running.notebook``), so its kernel's peak memory is
measured alone; ``results/run_times.csv`` records each notebook's wall time and peak as it finishes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bliss_utils._io import atomic_write_text
from bliss_utils.config import data_dir, find_project_root, output_dirs
from bliss_utils.running import preflight

EPILOG = """\
examples:
  python -m bliss_utils reproduce                      # the paper's settings (needs the datasets and weights)
  python -m bliss_utils reproduce --download           # the same, fetching missing datasets and weights first
  python -m bliss_utils reproduce --smoke              # stand-in encoders on generated data: tests the pipeline
  python -m bliss_utils reproduce --rehearsal          # the paper's settings, stand-ins on full-size generated data
  python -m bliss_utils reproduce --only 04 06 --set LAM=0.75 --output-dir out/run1

Figures go to <output-dir>/figures (default figures/), tables and REPORT.md to <output-dir>/results (default
results/), executed notebooks to <results>/executed/, each notebook's time and peak memory to
<results>/run_times.csv.
"""
FIRST_YOUR_DATA = 7  # notebooks from 07 on take the user's own data: not part of the paper's run
STAND_INS_VAR = "BLISS_STAND_INS"  # set for the kernels reproduce starts: it injected the stand-in values itself
# the stand-in modes and the one file each keeps its injected settings in (notebooks/)
MODE_FILES = {"smoke": "smoke.json", "rehearsal": "rehearsal.json"}
GENERATED_MARKER = "BLISS_GENERATED_DATA.json"  # in a folder of generated data: the sizes it was made with


def notebook_paths(root: Path | None = None) -> list[Path]:
    """The numbered notebooks ``notebooks/NN_*.ipynb``, in order."""
    folder = (root or find_project_root()) / "notebooks"
    paths = sorted(folder.glob("[0-9][0-9]_*.ipynb"))
    if not paths:
        raise FileNotFoundError(f"no notebooks NN_*.ipynb in {folder}")
    return paths


def mode_settings(mode: str, root: Path | None = None) -> dict[str, Any]:
    """The content of ``notebooks/<mode>.json`` (smoke, rehearsal): generated data sizes and the injected parameters."""
    if mode not in MODE_FILES:
        raise ValueError(f"mode must be one of {list(MODE_FILES)}; got {mode!r}")
    path = (root or find_project_root()) / "notebooks" / MODE_FILES[mode]
    settings = json.loads(path.read_text(encoding="utf-8"))
    if missing := {"data", "all"} - set(settings):
        raise ValueError(f"{path} lacks section(s) {sorted(missing)}")
    return settings


def generated_data_root(mode: str, root: Path | None = None) -> Path:
    """Where a stand-in mode generates its data when no folder is given: ``<repo>/out/<mode>/data`` (git-ignored)."""
    return (root or find_project_root()) / "out" / mode / "data"


def make_generated_data(root: Path, sizes: Mapping[str, Any]) -> Path:
    """Generate the datasets of a stand-in mode under ``root`` once (a marker records the sizes; others regenerate).

    ``sizes`` maps cifar10, cifar100 and tinyimagenet to [train, test] images per class, plus a ``seed``, and
    optionally ``your_images`` to {"normal": [...], "anomalous": [...], "per_class": n}: an image folder
    ``root/your_images`` whose train/ holds the normal classes and test/ every class.
    """
    from bliss_utils.datasets import synthetic

    marker = root / GENERATED_MARKER
    wanted = json.dumps({**sizes, "generator": synthetic.GENERATOR_VERSION}, sort_keys=True)
    if marker.is_file() and marker.read_text(encoding="utf-8") == wanted:
        return root
    if not marker.is_file() and root.is_dir() and any(p.name != "embeddings" for p in root.iterdir()):
        raise FileExistsError(
            f"{root} holds files that generated data did not write (real datasets?); stand-in modes generate their "
            "data into an empty folder or one they made: give another DATA_ROOT, or leave it empty for the default"
        )
    if marker.is_file():  # ours, made with other sizes: start afresh, or files of the old sizes would stay
        for stale in (p for p in root.iterdir() if p.name != "embeddings"):
            shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
    root.mkdir(parents=True, exist_ok=True)
    seed = int(sizes.get("seed", 0))
    synthetic.make_fake_cifar(root, "cifar10", *sizes["cifar10"], seed=seed)
    synthetic.make_fake_cifar(root, "cifar100", *sizes["cifar100"], seed=seed)
    synthetic.make_fake_tinyimagenet(root, *sizes["tinyimagenet"], seed=seed)
    if folder := sizes.get("your_images"):  # an image folder as a user brings one (07_your_data)
        classes = [*folder["normal"], *folder["anomalous"]]
        synthetic.make_fake_imagefolder(root / "your_images", classes, folder["per_class"], seed=seed)
        for name in folder["anomalous"]:  # seen in test/ only, as anomalies are
            shutil.rmtree(root / "your_images" / "train" / name)
    atomic_write_text(marker, wanted)
    return root


def declared_parameters(path: Path) -> dict[str, Any]:
    """The parameters ``path``'s ``parameters`` cell declares, with their default values."""
    import ast

    import papermill as pm

    return {name: ast.literal_eval(info["default"]) for name, info in pm.inspect_notebook(str(path)).items()}


# the help of each option too long to share a line with its add_argument call, in the order --help lists them
HELP = {
    "--smoke": "inject notebooks/smoke.json: stand-in encoders on generated data, minutes on a CPU; "
    "tests the pipeline, NOT the paper's numbers",
    "--rehearsal": "inject notebooks/rehearsal.json: the paper's settings with cheap stand-in encoders at "
    "the real dimensions on generated data of the real sizes; measures time and memory, "
    "its numbers mean nothing",
    "--output-dir": "write figures/ and results/ under this folder (default: the repo's)",
    "--data-root": "datasets folder (default: $BLISS_DATA_DIR or <repo>/data; "
    "smoke, rehearsal: generated under <output-dir>/data or out/<mode>/data)",
    "--set": "override a notebook parameter (VALUE as JSON, e.g. --set LAM=0.75); repeatable",
    "--only": "only notebooks starting with these, e.g. 04 06",
    "--skip-preflight": "do not check datasets and weights first (e.g. when a copied embedding cache holds everything)",
}


def register(subparsers: Any) -> None:
    """Add the ``reproduce`` subcommand to ``python -m bliss_utils``."""
    p = subparsers.add_parser(
        "reproduce",
        help="run every notebook in order (papermill) and write figures, tables and results/REPORT.md",
        description="Run the notebooks headless with their own parameters (the paper's: 00-06; 07 on your data with "
        "--only 07), or --smoke (all of them), or --rehearsal.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    stand_in = p.add_mutually_exclusive_group()
    for flag in ("--smoke", "--rehearsal"):
        stand_in.add_argument(flag, action="store_true", help=HELP[flag])

    def add(flag: str, **kwargs: Any) -> None:
        p.add_argument(flag, help=HELP[flag], **kwargs)

    add("--output-dir", default="")
    add("--data-root", default="")
    p.add_argument("--device", default="", help="torch device for embedding (default: CUDA, then MPS, then CPU)")
    p.add_argument("--max-trials", type=int, default=0, help="trials per setting (default 0: every trial)")
    add("--set", action="append", default=[], metavar="NAME=VALUE")
    add("--only", nargs="+", default=None, metavar="NN")
    p.add_argument("--kernel", default="python3", help="Jupyter kernel name (default python3)")
    p.add_argument("--download", action="store_true", help="fetch missing datasets and weights first (needs internet)")
    add("--skip-preflight", action="store_true")
    p.set_defaults(func=run)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The parameters the command line sets (--set, --data-root, --output-dir, --device, --max-trials)."""
    out: dict[str, Any] = {}
    for item in args.set:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ValueError(f"--set takes NAME=VALUE; got {item!r}")
        try:
            out[name] = json.loads(value)
        except ValueError:
            out[name] = value  # a bare string
    folders = {"DATA_ROOT": args.data_root, "OUTPUT_DIR": args.output_dir}
    out |= {key: str(Path(value).expanduser().resolve()) for key, value in folders.items() if value}
    return out | {key: value for key, value in (("DEVICE", args.device), ("MAX_TRIALS", args.max_trials)) if value}


def record_run_time(results: Path, notebook: str, seconds: float | None, peak_gib: float, mode: str) -> Path:
    """Put ``notebook``'s row into ``results/run_times.csv`` (atomically, keeping the other notebooks' rows).

    ``seconds=None`` drops its row instead (it failed: an older time would pass for this run's).
    """
    import pandas as pd

    from bliss_utils.evaluation.report import RUN_TIMES

    path = results / RUN_TIMES
    columns = ["notebook", "seconds", "peak_rss_gib", "mode"]
    rows = pd.read_csv(path) if path.is_file() else pd.DataFrame(columns=columns)
    rows = rows[rows["notebook"] != notebook]
    if seconds is not None:
        row = {"notebook": notebook, "seconds": round(seconds, 1), "peak_rss_gib": round(peak_gib, 2), "mode": mode}
        rows = pd.concat([rows, pd.DataFrame([row])], ignore_index=True) if len(rows) else pd.DataFrame([row])
    return atomic_write_text(path, rows.sort_values("notebook").to_csv(index=False))


def run_notebook(
    path: Path, out: Path, parameters: Mapping[str, Any], kernel: str, cwd: Path, mode: str = "paper"
) -> dict[str, Any]:
    """Execute one notebook in a short-lived process (``bliss_utils.running.notebook``); return its result record.

    In a stand-in ``mode`` its kernel is told (``STAND_INS_VAR``) that ``parameters`` already hold the stand-ins.
    """
    env = {k: v for k, v in os.environ.items() if k != STAND_INS_VAR}
    env |= {STAND_INS_VAR: mode} if mode in MODE_FILES else {}
    with tempfile.TemporaryDirectory(prefix="bliss-run-") as tmp:
        job, result = Path(tmp) / "job.json", Path(tmp) / "result.json"
        spec = {"input": str(path), "output": str(out), "parameters": dict(parameters), "kernel": kernel}
        job.write_text(json.dumps({**spec, "cwd": str(cwd), "result": str(result)}))
        # not check=True: a failed notebook is told by its result file, a crashed runner by its status below
        proc = subprocess.run([sys.executable, "-m", "bliss_utils.running.notebook", str(job)], cwd=cwd, env=env)
        if result.is_file():
            return json.loads(result.read_text(encoding="utf-8"))
    return {"failed": f"its runner exited with status {proc.returncode} (the error is printed above)"}


MODE_LABELS = {
    "smoke": "SMOKE (stand-in encoders on generated data: tests the pipeline, not the paper)",
    "rehearsal": "REHEARSAL (the paper's settings, stand-in encoders on full-size generated data: times and memory, "
    "not the paper's numbers)",
}


def _selected(root: Path, only: list[str] | None, mode: str) -> list[Path]:
    """The notebooks to run: those whose names start with one of ``only``; else the paper's, and in smoke mode the
    your-data ones too (on its generated image folder)."""
    paths = notebook_paths(root)
    if not only:
        return paths if mode == "smoke" else [p for p in paths if int(p.name[:2]) < FIRST_YOUR_DATA]
    if paths := [p for p in paths if any(p.name.startswith(prefix) for prefix in only)]:
        return paths
    raise ValueError(f"--only {' '.join(only)} matches no notebook in notebooks/")


def parameter_fits(value: Any, default: Any) -> bool:
    """Whether ``value`` may replace a parameter declared with ``default`` (an int may stand for a float)."""
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    return isinstance(value, type(default))


def check_overrides(declared: Mapping[str, Mapping[str, Any]], overrides: Mapping[str, Any]) -> None:
    """Raise a ValueError for a command-line parameter no selected notebook declares, or one of the wrong type."""
    for name, value in overrides.items():
        owners = {nb: params[name] for nb, params in declared.items() if name in params}
        if not owners:
            known = sorted({k for params in declared.values() for k in params})
            raise ValueError(f"no selected notebook ({', '.join(declared)}) declares {name}; their parameters: {known}")
        for nb, default in owners.items():
            if not parameter_fits(value, default):
                raise ValueError(
                    f"{name}={value!r} is a {type(value).__name__}, but {nb} declares {name} as a "
                    f'{type(default).__name__} (default {default!r}); --set values are JSON: true, 0.5, ["a"]'
                )


def stand_in_values(
    settings: Mapping[str, Any], stem: str, declared: Mapping[str, Any], data_root: str = ""
) -> dict[str, Any]:
    """The values a stand-in mode's ``settings`` give notebook ``stem``: its ``all`` block, then its own, those the
    notebook ``declared``, ``{DATA_ROOT}`` in a string replaced by ``data_root`` (the generated data); a name in its
    own block that the notebook lacks is an error."""
    own = settings.get(stem, {})
    if unknown := sorted(set(own) - set(declared)):
        raise ValueError(f"the stand-in settings name {unknown} for {stem}, which its parameters cell lacks")
    wanted = {k: v for k, v in {**settings.get("all", {}), **own}.items() if k in declared}
    return {k: v.replace("{DATA_ROOT}", data_root) if isinstance(v, str) else v for k, v in wanted.items()}


def _injections(params: Mapping[Path, dict], stand_in: dict, overrides: dict, checked: Sequence[str] = ()) -> dict:
    """Per notebook (``params``: each one's declared parameters), the values to inject: the mode's stand-ins, then
    the command line's, those it declares; the ``checked`` names (given with --set) must be declared by one of them,
    with their type."""
    check_overrides({p.name: declared for p, declared in params.items()}, {k: overrides[k] for k in checked})
    inject = {}
    for p, declared in params.items():
        given = {k: v for k, v in overrides.items() if k in declared}
        stand_ins = stand_in_values(stand_in, p.stem, declared, overrides.get("DATA_ROOT", ""))
        inject[p] = {**stand_ins, **given}  # the command line wins
    return inject


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _run_each(paths: list[Path], inject: dict, results: Path, mode: str, kernel: str, root: Path) -> bool:
    """Run the notebooks in order, recording each one's time and peak memory; False at the first failure."""
    executed = results / "executed"
    executed.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("BLISS_PROGRESS", "text")  # the kernels inherit it: plain bars, redrawn rarely (_progress)
    for i, path in enumerate(paths, 1):
        out = executed / path.name
        started = time.perf_counter()
        _say(f"[{i}/{len(paths)}] {path.name} ...")
        outcome = run_notebook(path, out, inject[path], kernel, root, mode)
        seconds = time.perf_counter() - started
        if "failed" in outcome:
            record_run_time(results, path.stem, None, math.nan, mode)
            _say(f"error: {path.name} {outcome['failed']}\n  the executed copy with the full traceback: {out}")
            return False
        record_run_time(results, path.stem, seconds, outcome["peak_rss_gib"], mode)
        _say(f"  {path.name} done in {seconds:.0f} s, peak {outcome['peak_rss_gib']:.1f} GiB")
    return True


def run(args: argparse.Namespace) -> int:
    """Run the notebooks as ``args`` says; return 0 on success, 1 with a one-line message on failure."""
    from bliss_utils.evaluation.report import write_report

    root = find_project_root()
    mode = "smoke" if args.smoke else "rehearsal" if args.rehearsal else "paper"
    paths = _selected(root, args.only, mode)
    overrides = _overrides(args)
    stand_in = mode_settings(mode, root) if mode in MODE_FILES else {}
    if stand_in:  # generated data, with its own embedding cache beside it
        # (--output-dir, when given, is also the resolved OUTPUT_DIR override)
        default = Path(overrides["OUTPUT_DIR"]) / "data" if args.output_dir else generated_data_root(mode, root)
        wanted = Path(overrides.get("DATA_ROOT") or default).expanduser().resolve()  # --set DATA_ROOT=~/x too
        generated = make_generated_data(wanted, stand_in["data"])
        overrides["DATA_ROOT"] = str(generated)
        overrides.setdefault("CACHE_DIR", str(generated / "embeddings"))
    data_root = Path(overrides.get("DATA_ROOT") or data_dir()).expanduser()
    params = {p: declared_parameters(p) for p in paths}  # papermill reads each notebook once
    inject = _injections(params, stand_in, overrides, [item.partition("=")[0] for item in args.set])
    if not args.skip_preflight:
        merged = [{**params[p], **inject[p]} for p in paths]  # the values the notebooks will run with
        preflight.preflight(merged, data_root, download=args.download, notebooks=[p.name for p in paths])
    figures, results = output_dirs(args.output_dir)
    _say(f"reproduce: {len(paths)} notebooks, mode {MODE_LABELS.get(mode, mode)}")
    started_all = time.perf_counter()
    if not _run_each(paths, inject, results, mode, args.kernel, root):
        return 1
    report, elapsed = write_report(results, mode=mode), time.perf_counter() - started_all
    _say(f"all notebooks done in {elapsed:.0f} s\nfigures: {figures}\ntables:  {results}\nreport:  {report}")
    return 0
