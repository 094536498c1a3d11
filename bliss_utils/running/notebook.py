"""Execute one notebook with papermill, report its kernel's peak memory: ``python -m bliss_utils.running.notebook JOB``.

``reproduce`` runs each notebook in this short-lived process, so that the children it has waited for are exactly that
notebook's kernel (and whatever the kernel started): their peak resident memory is that notebook's, not a running
maximum over every notebook so far. JOB is a JSON file {input, output, parameters, kernel, cwd, result}; the outcome
goes to ``result`` as JSON: {"peak_rss_gib"} on success, {"failed": one-line reason} when a cell raised.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from bliss_utils._io import atomic_write_text


def children_peak_rss_gib() -> float:
    """Peak resident memory of the largest child process waited for so far, in GiB (NaN where not measurable)."""
    try:
        import resource
    except ImportError:  # Windows
        return float("nan")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return peak * (1 if sys.platform == "darwin" else 1024) / 2**30  # bytes on macOS, KiB on Linux


def execute(job: dict[str, Any]) -> dict[str, Any]:
    """Run the notebook ``job`` names; return what the result file holds."""
    import papermill as pm
    from jupyter_client.manager import KernelManager

    # IPC sockets in a private folder where there are any: a local kernel needs no TCP port, and ipykernel warns
    # about unencrypted TCP
    with tempfile.TemporaryDirectory(prefix="bliss-kernel-") as sockets:
        ipc = {"transport": "ipc", "ip": str(Path(sockets) / "kernel")} if os.name == "posix" else {}
        km = KernelManager(kernel_name=job["kernel"], **ipc)
        run = {"parameters": job["parameters"], "kernel_name": job["kernel"], "cwd": job["cwd"], "progress_bar": False}
        try:  # stderr_file: bars, warnings
            pm.execute_notebook(
                job["input"], job["output"], **run, km=km, request_save_on_cell_execute=True, stderr_file=sys.stderr
            )
        except pm.PapermillExecutionError as err:
            return {"failed": f"failed in cell {err.exec_count}: {err.ename}: {err.evalue}"}
        finally:  # papermill leaves a kernel it was given running
            if km.has_kernel:
                km.shutdown_kernel()
    return {"peak_rss_gib": children_peak_rss_gib()}


def main(argv: list[str]) -> int:
    """Read the job file ``argv[0]``, run it, write its result file; 0 when the notebook ran through."""
    job = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    outcome = execute(job)
    atomic_write_text(job["result"], json.dumps(outcome))
    return 1 if "failed" in outcome else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
