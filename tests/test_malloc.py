"""reuse_freed_memory: inside it, training epochs reuse freed memory instead of faulting pages in; after it, the
memory goes back to the system."""

import resource

import pytest

from bliss_utils import _malloc

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(_malloc._glibc() is None, reason="glibc only (elsewhere the context does nothing)")


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def _epochs(n: int = 3) -> int:
    """Minor page faults of ``n`` full-batch epochs of a LUNAR-shaped network on 40,000 rows (40 MB activations)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(5, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256), torch.nn.ReLU())
    x = torch.rand(40_000, 5)
    for _ in range(3):  # warm-up: the allocator reaches its working size
        net(x).sum().backward()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(n):
        net(x).sum().backward()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def test_epochs_reuse_freed_memory_inside_and_release_it_after():
    outside = _epochs()
    assert outside > 3 * 3 * 40_000 * 256 * 4 // 4096 // 2  # each epoch maps its activations afresh
    start = _rss_mib()
    with _malloc.reuse_freed_memory():
        with _malloc.reuse_freed_memory():  # nested: only the outermost exit restores
            pass
        assert _epochs() < outside / 3  # glibc may still grow its heap once or twice
    assert _malloc._depth == 0
    assert _rss_mib() < start + 50  # the heap kept for reuse was handed back
