"""The preflight of ``reproduce``: before any notebook runs, check that the datasets (named directly or through
settings) and the weights the selected notebooks name are on this machine, and report all that is missing in one
error; with ``--download`` fetch it, unless the machine appears offline (then nothing is tried)."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

from bliss_utils.encoders.weights import ENV_OFFLINE as OFFLINE_VAR  # read by the encoders: local weights only

# parameters the preflight reads to know which datasets and encoders the notebooks need
_DATASET_KEYS = ("DATASETS", "DATASET", "BACKBONE_DATASETS", "OBJECT_AWARE_DATASETS")
# parameters naming settings (e.g. "cifar10-6"): splits.setting_dataset gives each one's dataset
_SETTING_KEYS = ("SETTINGS", "FIG4_SETTING", "EFFICIENCY_SETTING")
_CUSTOM_KEY = "CUSTOM_SETTINGS"  # a notebook's own settings, {setting: {"dataset": NAME, "trials": [...]}}
_ENCODER_KEYS = ("ENCODER", "IMAGE_ENCODER", "BACKBONES")
NETWORK_TIMEOUT_S = 3.0  # --download: longer without a connection to the download hosts means offline
_URL = re.compile(r"https?://[^\s`'\"()<>]+")


class PreflightError(FileNotFoundError):
    """Datasets or weights the notebooks need are missing (the message says what to fetch and where to put it)."""


def _listed(value: Any) -> list[str]:
    """A parameter's value as a list of names: a string alone, a list as it is, nothing for '' or None."""
    return [value] if isinstance(value, str) else list(value or [])


class _Needs(NamedTuple):
    """What the notebooks' parameters name: datasets (each with the parameter that first names it), encoders, and a
    problem line for each setting whose dataset cannot be told."""

    datasets: dict[str, str]
    encoders: list[str]
    problems: list[str]


def _needs(params: Sequence[Mapping[str, Any]], notebooks: Sequence[str] = ()) -> _Needs:
    """The datasets and encoders ``params`` (each notebook's parameters, named by ``notebooks``) need."""
    from bliss_utils.datasets import splits

    datasets: dict[str, str] = {}
    problems = []
    for i, p in enumerate(params):
        where = f" of {notebooks[i]}" if i < len(notebooks) else ""
        for key in _DATASET_KEYS:
            for name in filter(None, _listed(p.get(key))):
                datasets.setdefault(name, f"{key}{where}")
        custom = p.get(_CUSTOM_KEY) or {}
        if not isinstance(custom, Mapping):
            problems.append(
                f"- {_CUSTOM_KEY}{where} = {custom!r}: must be {{setting: {{'dataset': NAME, 'trials': ...}}}}"
            )
            custom = {}
        for key in _SETTING_KEYS:
            for setting in filter(None, _listed(p.get(key))):
                try:
                    datasets.setdefault(splits.setting_dataset(setting, custom), f"{key}{where}")
                except ValueError as err:  # an unknown setting, or a malformed CUSTOM_SETTINGS entry
                    problems.append(f"- {key}{where} names setting {setting!r}: {err}")
    encoders = dict.fromkeys(e for p in params for key in _ENCODER_KEYS for e in _listed(p.get(key)))
    return _Needs(datasets, list(filter(None, encoders)), problems)


class _Missing(NamedTuple):
    """One missing dataset or weights file: what the plain preflight says of it (what is missing and where it goes),
    the URL ``--download`` fetches it from (None: none known) and that download (None: nothing can fetch it)."""

    kind: str
    label: str
    message: str
    url: str | None
    fetch: Callable[[], Any] | None

    def line(self, note: str = "") -> str:
        """The problem line: label, plain message, then ``note`` (what became of the download) on its own line."""
        return f"- {self.label}: {self.message}" + (f"\n  {note}" if note else "")


def _dataset_url(name: str) -> str | None:
    """Where ``load_dataset(name, download=True)`` fetches ``name`` from (None: it cannot, e.g. an image folder)."""
    from bliss_utils.datasets import images

    if name in images.CIFAR_FILES:
        return images.CIFAR_FILES[name].url
    return images.TINYIMAGENET_URL if name == "tinyimagenet" else None


def _missing_datasets(datasets: Mapping[str, str], data_root: Path) -> tuple[list[_Missing], list[str]]:
    """The datasets (name -> the parameter naming it) absent from ``data_root``, and a line for each unknown name."""
    from bliss_utils.datasets.images import SPLITS, DatasetNotFoundError, load_dataset

    def fetch(name: str) -> None:
        for split in SPLITS:
            load_dataset(name, split, root=data_root, download=True)

    missing, problems = [], []
    for name, where in datasets.items():
        label = f"dataset {name}"
        try:
            for split in SPLITS:
                load_dataset(name, split, root=data_root, download=False)
        except DatasetNotFoundError as err:
            url = _dataset_url(name)
            missing.append(_Missing("datasets", label, str(err), url, partial(fetch, name) if url else None))
        except ValueError as err:  # not a dataset name: say which parameter gave it
            problems.append(f"- {where} names dataset {name!r}: {err}")
        except OSError as err:
            missing.append(_Missing("datasets", label, f"cannot be read under {data_root} ({err})", None, None))
    return missing, problems


def _missing_weights(encoders: Sequence[str]) -> list[_Missing]:
    """The encoders whose weights are not on this machine, checked offline (nothing is downloaded or built)."""
    from bliss_utils.encoders import WeightsNotFoundError, describe_encoder, load_encoder

    def fetch(name: str) -> None:
        load_encoder(name, device="cpu")  # online now: the library's own cache fills, or it fails

    missing = []
    previous = os.environ.get(OFFLINE_VAR)
    os.environ[OFFLINE_VAR] = "1"  # a missing file is reported at once instead of after the hub's retries
    try:
        for name in encoders:
            try:  # finds and fingerprints the weights without building the model (a ViT-L/14 is gigabytes)
                describe_encoder(name, device="cpu")
            except WeightsNotFoundError as err:
                url = m.group(0) if (m := _URL.search(str(err))) else None  # missing() names the file to fetch
                missing.append(_Missing("weights", f"weights of {name}", str(err), url, partial(fetch, name)))
            except OSError as err:
                message = f"cannot be read ({err}); see docs/backbones.md"
                missing.append(_Missing("weights", f"weights of {name}", message, None, None))
    finally:
        if previous is None:
            os.environ.pop(OFFLINE_VAR, None)
        else:
            os.environ[OFFLINE_VAR] = previous
    return missing


def _missing_checkpoint(params: Sequence[Mapping[str, Any]]) -> list[_Missing]:
    """AnomalyCLIP's prompt checkpoint when a notebook asks for its row and it is absent (only --download fetches it:
    without it the row says "not run: checkpoint missing")."""
    from bliss_utils.encoders import anomalyclip_prompts as ac

    if not any("anomalyclip" in _listed(p.get("RELATED")) for p in params) or ac.checkpoint_or_none() is not None:
        return []
    message = f"absent; fetch {ac.CHECKPOINT_URL} into {ac.checkpoint_location()} (without it: {ac.NOT_RUN})"
    return [_Missing("weights", "AnomalyCLIP's prompt checkpoint", message, ac.CHECKPOINT_URL, ac.download_checkpoint)]


def _endpoint(url: str) -> tuple[str, int] | None:
    """The (host, port) a download of ``url`` connects to first: its proxy's when one is set for it."""
    import urllib.parse
    import urllib.request

    parsed = urllib.parse.urlsplit(url)
    if not parsed.hostname:
        return None
    proxy = urllib.request.getproxies().get(parsed.scheme)
    if proxy and not urllib.request.proxy_bypass(parsed.hostname):
        parsed = urllib.parse.urlsplit(proxy if "//" in proxy else f"http://{proxy}")
    return (parsed.hostname or "", parsed.port or (443 if parsed.scheme == "https" else 80))


def network_reachable(urls: Sequence[str], timeout: float = NETWORK_TIMEOUT_S) -> bool:
    """Whether a TCP connection to the host (or proxy) of any of ``urls`` opens within ``timeout`` seconds in all."""
    import queue
    import socket
    import threading

    answers: queue.SimpleQueue[bool] = queue.SimpleQueue()

    def attempt(endpoint: tuple[str, int]) -> None:
        try:
            socket.create_connection(endpoint, timeout=timeout).close()
            answers.put(True)
        except OSError:
            answers.put(False)

    endpoints = {e for e in map(_endpoint, urls) if e}
    # all at once, in daemon threads: a DNS lookup has no timeout of its own, and a hung one must hold nothing up
    for endpoint in endpoints:
        threading.Thread(target=attempt, args=(endpoint,), daemon=True).start()
    deadline = time.monotonic() + timeout
    for _ in endpoints:
        try:
            if answers.get(timeout=max(0.0, deadline - time.monotonic())):
                return True
        except queue.Empty:
            break
    return False


def _download(missing: Sequence[_Missing]) -> tuple[list[tuple[_Missing, str]], str]:
    """Fetch the missing items; return those still missing, each with what became of its download, and a note on the
    network (a line when the machine appears offline: then nothing is tried)."""
    urls = list(dict.fromkeys(m.url for m in missing if m.url))
    if urls and not network_reachable(urls):
        hosts = ", ".join(dict.fromkeys(e[0] for e in map(_endpoint, urls) if e))
        note = f"This machine appears to be offline (no connection to {hosts} within {NETWORK_TIMEOUT_S:g} s), so "
        note += "nothing was downloaded: fetch the files above on a machine with internet and put them where it says."
        return [(m, f"download: {m.url} (not tried: offline)" if m.url else "") for m in missing], note
    left = []
    for m in missing:
        if m.fetch is None:
            left.append((m, ""))
            continue
        try:
            m.fetch()
        except (OSError, RuntimeError, ValueError) as err:  # torchvision raises RuntimeError on a bad checksum
            failure = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            left.append((m, f"the download of {m.url} failed: {failure}" if m.url else f"fetching failed: {failure}"))
    return left, ""


def _stop(missing: Sequence[_Missing], lines: list[str], note: str = "") -> PreflightError:
    """The one error of a preflight: what is ``missing``, a line per problem, ``note``, the smoke hint."""
    kinds = [k for k in ("datasets", "weights") if any(m.kind == k for m in missing)]
    parts = [f"missing {' and '.join(kinds)}"] if kinds else []
    if len(lines) > len(missing):  # the other lines are parameters that name no known dataset or setting
        parts.append("notebook parameters that name no known dataset or setting")
    hint = "Without network or data, `python -m bliss_utils reproduce --smoke` runs the pipeline on generated data."
    body = "\n".join([*lines, *([note] if note else []), hint])
    return PreflightError(f"{', and '.join(parts)}; fetch or fix them, then run again:\n{body}")


def preflight(
    params: Sequence[Mapping[str, Any]], data_root: Path, download: bool = False, notebooks: Sequence[str] = ()
) -> None:
    """Raise one :class:`PreflightError` naming every missing dataset and weights file and every unknown setting.

    ``params`` are the notebooks' parameters (named by ``notebooks`` in the message). With ``download`` the missing
    ones are fetched; a failed download says what the plain check says plus the URL, and when the machine appears
    offline (:func:`network_reachable`) nothing is tried.
    """
    needs = _needs(params, notebooks)
    missing, problems = _missing_datasets(needs.datasets, data_root)  # quick: checked before any model loads
    missing += _missing_weights(needs.encoders)  # collected too: one round tells of everything
    if download:
        missing += _missing_checkpoint(params)
    left, note = _download(missing) if download and missing else ([(m, "") for m in missing], "")
    if needs.problems or problems or left:
        lines = [*needs.problems, *problems, *(m.line(outcome) for m, outcome in left)]
        raise _stop([m for m, _ in left], lines, note)
