"""Safe permission fixing: make a tree owned by uid:gid without trusting its contents.

The rules and the walk are in :mod:`entrypoint.permwalk` (read its doc: the tree is
attacker-writable and the walk assumes any entry can be swapped at any moment); a
large tree on a machine with several CPUs is split between forked workers by
:mod:`entrypoint.perms_parallel`. This module chooses between the two.
"""

from __future__ import annotations

import os

from entrypoint.permwalk import Hook, PrepareResult, Walker, desired_mode

__all__ = ["Hook", "PrepareResult", "desired_mode", "prepare_tree"]


def prepare_tree(
    root: str,
    uid: int,
    gid: int,
    *,
    hook: Hook | None = None,
    trust_before_ns: int | None = None,
    workers: int | None = None,
) -> PrepareResult:
    """Make the tree at ``root`` owned by ``uid:gid`` with safe modes (rules: permwalk).

    ``root`` itself must be a real directory (not a symlink). Never raises for problems
    inside the tree: they are counted in ``failed``/``skipped`` on the result.
    ``workers`` is the number of processes (default: the usable CPUs, at most 4, see
    :mod:`entrypoint.perms_parallel`); a tree too small to split is walked by this
    process alone either way. Call it from a single-threaded process: workers are forked.
    """
    # abspath, not resolve(): resolving would follow symlinks before the checks.
    root = os.path.abspath(root)  # noqa: PTH100
    if workers is None or workers > 1:
        from entrypoint.perms_parallel import ParallelWalker, default_workers

        workers = default_workers() if workers is None else workers
        if workers > 1:
            return ParallelWalker(root, uid, gid, hook, trust_before_ns, workers).run()
    return Walker(root, uid, gid, hook, trust_before_ns).run()
