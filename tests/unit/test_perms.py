"""The permission walk on real temporary trees (needs root: it chowns)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from entrypoint import perms_parallel
from entrypoint.perms import Hook, PrepareResult, desired_mode, prepare_tree

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the walk chowns: needs root")

UID, GID = 568, 568


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    (root / "Server" / "world").mkdir(parents=True)
    (root / "Server" / "world" / "region.bin").write_bytes(b"x")
    (root / "mods").mkdir()
    (root / "users.json").write_text("{}")
    return root


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    d = tmp_path / "outside"
    d.mkdir()
    f = d / "shadow"
    f.write_text("secret")
    os.chown(f, 0, 0)
    f.chmod(0o640)
    return f


def owner_mode(p: Path) -> tuple[int, int, int]:
    st = p.lstat()
    return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)


def all_owned(root: Path) -> bool:
    return all((p.lstat().st_uid, p.lstat().st_gid) == (UID, GID) for p in [root, *root.rglob("*")])


def test_whole_tree_owned_and_counts(tree: Path) -> None:
    res = prepare_tree(str(tree), UID, GID)
    assert (res.failed, res.skipped) == (0, 0)
    assert res.scanned == 6
    assert res.changed == 6
    assert all_owned(tree)


def test_exact_modes(tree: Path) -> None:
    cases: dict[str, tuple[bool, int, int]] = {
        # relative path: (is_dir, mode before, mode after)
        "ro.txt": (False, 0o400, 0o600),
        "script.sh": (False, 0o755, 0o755),
        "setuid": (False, 0o4755, 0o755),
        "setgid": (False, 0o2750, 0o750),
        "group_only": (False, 0o064, 0o664),
        "rodir": (True, 0o500, 0o700),
        "shared": (True, 0o2775, 0o2775),
        "closed": (True, 0o000, 0o700),
        ".auth": (True, 0o755, 0o700),
        ".auth/tokens.json": (False, 0o644, 0o600),
        ".auth/nested": (True, 0o777, 0o700),
        ".auth/nested/x": (False, 0o755, 0o600),
        ".hyos": (True, 0o755, 0o755),
        ".hyos/secrets": (True, 0o755, 0o700),
        ".hyos/secrets/api": (False, 0o666, 0o600),
        ".hyos/machine-id": (False, 0o644, 0o444),
        ".hyos/other": (False, 0o444, 0o644),
        "mods/.auth": (True, 0o750, 0o700),  # at any depth
        "mods/secrets": (True, 0o755, 0o755),  # only under .hyos
    }
    for rel, (is_dir, _, _) in cases.items():
        p = tree / rel
        if is_dir:
            p.mkdir(exist_ok=True)
        else:
            p.write_text("x")
    # Modes last, deepest first, so closed parents do not block creation.
    for rel, (_, before, _) in sorted(cases.items(), key=lambda kv: -kv[0].count("/")):
        os.chmod(tree / rel, before)
    res = prepare_tree(str(tree), UID, GID)
    assert res.failed == 0, res.failures
    got = {rel: oct(owner_mode(tree / rel)[2]) for rel in cases}
    assert got == {rel: oct(after) for rel, (_, _, after) in cases.items()}
    assert all_owned(tree)


def test_desired_mode_never_widens() -> None:
    for perm in range(0o7777 + 1):
        for fmt in (stat.S_IFREG, stat.S_IFDIR):
            want = desired_mode(fmt | perm)
            assert want & 0o077 == perm & 0o077  # group/other untouched
            assert want & ~perm & ~0o700 == 0  # only owner bits ever added


def count_calls(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    calls = {"chown": 0, "chmod": 0, "fchown": 0, "fchmod": 0}

    def wrap(name: str) -> Callable[..., Any]:
        real = getattr(os, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            calls[name] += 1
            return real(*args, **kwargs)

        return counted

    for name in calls:
        monkeypatch.setattr(os, name, wrap(name))
    return calls


def test_second_run_changes_nothing(
    tree: Path, outside: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tree / ".auth").mkdir()
    (tree / ".auth" / "tokens.json").write_text("{}")
    (tree / "link").symlink_to(outside)
    (tree / "a").write_text("a")
    os.link(tree / "a", tree / "mods" / "a-again")  # hard link fully inside the tree
    first = prepare_tree(str(tree), UID, GID)
    assert first.changed > 0 and first.failed == 0
    calls = count_calls(monkeypatch)
    second = prepare_tree(str(tree), UID, GID)
    assert second.changed == 0
    assert second.scanned == first.scanned
    assert calls == {"chown": 0, "chmod": 0, "fchown": 0, "fchmod": 0}


def test_symlink_to_outside_file_leaves_target_alone(tree: Path, outside: Path) -> None:
    (tree / "shadow").symlink_to(outside)
    (tree / "dirlink").symlink_to(outside.parent, target_is_directory=True)
    res = prepare_tree(str(tree), UID, GID)
    assert res.failed == 0
    assert owner_mode(outside) == (0, 0, 0o640)
    assert owner_mode(outside.parent)[:2] == (0, 0)
    # The link itself is ours now (lchown), which grants nothing.
    assert (tree / "shadow").lstat().st_uid == UID


def test_symlink_loops(tree: Path) -> None:
    (tree / "a").symlink_to("b")
    (tree / "b").symlink_to("a")
    (tree / "self").symlink_to(".")
    (tree / "Server" / "up").symlink_to("..")
    res = prepare_tree(str(tree), UID, GID)
    assert res.failed == 0
    assert res.scanned == 10


def test_root_symlink_refused(tmp_path: Path, tree: Path) -> None:
    link = tmp_path / "link"
    link.symlink_to(tree)
    res = prepare_tree(str(link), UID, GID)
    assert res.failed == 1 and res.scanned == 0
    assert tree.stat().st_uid == 0


def test_directory_replaced_by_symlink_while_walking(tree: Path, outside: Path) -> None:
    victim = tree / "Server"

    def swap(event: str, path: str) -> None:
        if event == "enter" and path == str(victim):
            victim.rename(tree / "Server.moved")
            victim.symlink_to(outside.parent, target_is_directory=True)

    res = prepare_tree(str(tree), UID, GID, hook=swap)
    assert res.failed == 0
    assert owner_mode(outside) == (0, 0, 0o640)
    assert owner_mode(outside.parent)[:2] == (0, 0)
    assert any("Server" in p and "replaced" in p for p in res.skipped_paths)


def test_entry_replaced_by_symlink_after_listing(tree: Path, outside: Path) -> None:
    def swap(event: str, path: str) -> None:
        if event == "listed" and path == str(tree):
            shutil.rmtree(tree / "Server")
            (tree / "Server").symlink_to(outside.parent, target_is_directory=True)
            (tree / "users.json").unlink()
            (tree / "users.json").symlink_to(outside)

    res = prepare_tree(str(tree), UID, GID, hook=swap)
    assert res.failed == 0
    assert owner_mode(outside) == (0, 0, 0o640)
    assert owner_mode(outside.parent)[:2] == (0, 0)


def test_files_vanishing_during_walk(tree: Path) -> None:
    for i in range(20):
        (tree / "mods" / f"m{i}.jar").write_text("j")

    def vanish(event: str, path: str) -> None:
        if event == "listed" and path == str(tree / "mods"):
            for i in range(0, 20, 2):
                (tree / "mods" / f"m{i}.jar").unlink()
        if event == "listed" and path == str(tree):
            shutil.rmtree(tree / "Server")

    res = prepare_tree(str(tree), UID, GID, hook=vanish)
    assert res.failed == 0
    assert res.skipped == 11
    assert all("vanished" in p for p in res.skipped_paths)
    assert all_owned(tree)


def test_hard_link_to_outside_file_gets_nothing(tree: Path, outside: Path) -> None:
    os.link(outside, tree / "innocent")
    res = prepare_tree(str(tree), UID, GID)
    assert res.failed == 0
    assert owner_mode(outside) == (0, 0, 0o640)
    assert res.skipped == 1 and "outside" in res.skipped_paths[0]


def test_hard_links_inside_tree_are_fixed(tree: Path) -> None:
    (tree / "a").write_text("a")
    (tree / "a").chmod(0o400)
    os.link(tree / "a", tree / "mods" / "b")
    res = prepare_tree(str(tree), UID, GID)
    assert (res.failed, res.skipped) == (0, 0)
    assert owner_mode(tree / "a") == (UID, GID, 0o600)


def test_device_nodes_are_not_chowned(tree: Path) -> None:
    dev = tree / "null"
    os.mknod(dev, 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    res = prepare_tree(str(tree), UID, GID)
    assert owner_mode(dev) == (0, 0, 0o600)
    assert res.skipped == 1


def test_result_is_json_serialisable(tree: Path) -> None:
    res: PrepareResult = prepare_tree(str(tree), UID, GID)
    assert json.loads(json.dumps(res.as_dict()))["changed"] == res.changed


# --- workers: large trees are split between forked processes ----------------------------


@pytest.fixture
def split(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make even a small tree worth splitting."""
    monkeypatch.setattr(perms_parallel, "_TASKS_PER_WORKER", 1)


def wait_until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.005)


def entered_by(log: Path) -> Hook:
    """A hook that records which process entered which directory (forked workers
    cannot report through memory). Entering ``a`` or ``b`` waits until the other one has
    been entered too: a barrier that only two processes can pass, so one process walking
    both would time out and fail the pid assertion."""

    def hook(event: str, path: str) -> None:
        if event == "enter":
            with log.open("a") as f:
                f.write(f"{os.getpid()} {path}\n")
            if path.endswith(("/a", "/b")):
                other = path[:-1] + ("b" if path.endswith("a") else "a")
                wait_until(lambda: f" {other}\n" in log.read_text(), seconds=5)

    return hook


def pids_of(log: Path) -> dict[str, int]:
    return {
        path: int(pid)
        for pid, path in (line.split(" ", 1) for line in log.read_text().splitlines())
    }


def test_workers_walk_the_whole_tree(
    split: None, tree: Path, outside: Path, tmp_path: Path
) -> None:
    for d in ("a", "b", "c", "d"):
        (tree / d / "deep").mkdir(parents=True)
        (tree / d / "deep" / "f").write_text("x")
        (tree / d / "ro").write_text("x")
        (tree / d / "ro").chmod(0o400)
    (tree / "c" / ".auth").mkdir()
    (tree / "c" / ".auth" / "t").write_text("x")
    (tree / "d" / "link").symlink_to(outside)
    log = tmp_path / "log"
    res = prepare_tree(str(tree), UID, GID, hook=entered_by(log), workers=2)
    assert (res.failed, res.skipped) == (0, 0), res.failures
    assert res.scanned == 6 + 4 * 4 + 2 + 1
    assert res.changed == res.scanned
    assert all_owned(tree)
    assert owner_mode(tree / "b" / "ro")[2] == 0o600
    assert owner_mode(tree / "c" / ".auth")[2] == 0o700
    assert owner_mode(tree / "c" / ".auth" / "t")[2] == 0o600
    assert owner_mode(outside) == (0, 0, 0o640)
    pids = pids_of(log)
    assert pids[f"{tree}/a"] != pids[f"{tree}/b"]  # really two processes
    # A second run: nothing to change, same count.
    again = prepare_tree(str(tree), UID, GID, workers=2)
    assert (again.changed, again.failed, again.scanned) == (0, 0, res.scanned)


def test_hard_link_names_are_counted_across_workers(
    split: None, tree: Path, outside: Path, tmp_path: Path
) -> None:
    for d in ("a", "b"):
        (tree / d).mkdir()
    (tree / "a" / "one").write_text("x")
    (tree / "a" / "one").chmod(0o400)
    os.link(tree / "a" / "one", tree / "b" / "two")  # both names inside, in two workers
    os.link(outside, tree / "a" / "shadow")
    os.link(outside, tree / "b" / "shadow")  # 3 names, 2 inside: still outside
    log = tmp_path / "log"
    res = prepare_tree(str(tree), UID, GID, hook=entered_by(log), workers=2)
    pids = pids_of(log)
    assert pids[f"{tree}/a"] != pids[f"{tree}/b"]
    assert res.failed == 0, res.failures
    assert owner_mode(tree / "b" / "two") == (UID, GID, 0o600)
    assert owner_mode(outside) == (0, 0, 0o640)
    assert res.skipped == 1 and "outside" in res.skipped_paths[0]


def test_a_failing_worker_fails_the_walk(split: None, tree: Path, tmp_path: Path) -> None:
    for d in ("a", "b"):
        (tree / d).mkdir()
    me = os.getpid()
    took = tmp_path / "worker-took-a-task"

    def hook(event: str, path: str) -> None:
        if event == "enter" and os.getpid() != me:
            took.touch()
            raise RuntimeError("worker dies")
        if event == "enter":
            wait_until(took.exists)  # the worker takes a task meanwhile

    res = prepare_tree(str(tree), UID, GID, hook=hook, workers=2)
    assert res.failed == 1
    assert "worker" in res.failures[0]


# --- mounts: needs a private mount namespace -------------------------------------

MOUNT_SNIPPET = textwrap.dedent(
    """
    import json, os, sys
    from entrypoint import perms, perms_parallel
    root, sub, workers = sys.argv[1], sys.argv[2], int(sys.argv[3])
    perms_parallel._TASKS_PER_WORKER = 1  # split even this small tree when workers > 1
    res = perms.prepare_tree(root, 568, 568, workers=workers)
    owners = {n: os.lstat(os.path.join(root, sub, n, "f")).st_uid for n in ("tmpfs", "bind")}
    print(json.dumps({"result": res.as_dict(), "owners": owners}))
    """
)


def _unshare_works() -> str | None:
    if shutil.which("unshare") is None:
        return "unshare(1) is not installed"
    probe = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "true"], capture_output=True, text=True
    )
    if probe.returncode != 0:
        return f"unshare -m is not permitted here: {probe.stderr.strip()}"
    return None


@pytest.fixture
def mount_ns() -> Iterator[None]:
    reason = _unshare_works()
    if reason is not None:
        pytest.skip(reason)
    yield


@pytest.mark.parametrize(("sub", "workers"), [(".", 1), ("mods", 2)])
def test_mounts_inside_the_tree_are_not_crossed(
    mount_ns: None, tree: Path, tmp_path: Path, sub: str, workers: int
) -> None:
    """Also with workers: then the mounts lie in a subtree a forked worker walks."""
    other = tmp_path / "elsewhere"  # same filesystem: st_dev alone would not notice
    other.mkdir()
    (other / "f").write_text("x")
    base = Path(os.path.normpath(tree / sub))
    (base / "tmpfs").mkdir()
    (base / "bind").mkdir()
    script = (
        f"mount -t tmpfs none {base}/tmpfs && touch {base}/tmpfs/f && "
        f"mount --bind {other} {base}/bind && "
        f'exec {sys.executable} -c "$0" {tree} {sub} {workers}'
    )
    out = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script, MOUNT_SNIPPET],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["owners"] == {"tmpfs": 0, "bind": 0}
    assert report["result"]["failed"] == 0
    skipped = report["result"]["skipped_paths"]
    assert sorted(skipped) == [
        f"{base}/bind (other filesystem)",
        f"{base}/tmpfs (other filesystem)",
    ]
    assert (other / "f").stat().st_uid == 0
    assert (tree / "Server").stat().st_uid == UID


# --- the stamp: unchanged directories are not stat'ed again ----------------------------


def fs_now(tmp: Path, after: Path) -> int:
    """File-system time strictly later than every ctime under ``after`` (the clock
    is coarse: polled with a deadline until it has ticked)."""
    latest = max(p.lstat().st_ctime_ns for p in [after, *after.rglob("*")])
    probe = tmp / f"clock-{os.getpid()}"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        probe.write_text("")
        now = probe.stat().st_ctime_ns
        probe.unlink()
        if now > latest:
            return now
        time.sleep(0.001)
    raise AssertionError("file-system clock did not advance")


def test_trusted_dirs_skip_stat_but_new_entries_are_seen(tree: Path, tmp_path: Path) -> None:
    (tree / ".auth").mkdir()
    (tree / ".auth" / "tokens.json").write_text("{}")
    assert prepare_tree(str(tree), UID, GID).failed == 0
    trust = fs_now(tmp_path, tree)
    again = prepare_tree(str(tree), UID, GID, trust_before_ns=trust)
    assert (again.changed, again.failed) == (0, 0)
    assert again.trusted == 2  # users.json, region.bin; never the .auth file
    # In-place changes in a secret dir are still fixed; a new file changes its dir's ctime.
    (tree / ".auth" / "tokens.json").chmod(0o644)
    (tree / "Server" / "world" / "new.bin").write_text("root made me")
    third = prepare_tree(str(tree), UID, GID, trust_before_ns=trust)
    assert third.changed == 2
    assert owner_mode(tree / ".auth" / "tokens.json") == (UID, GID, 0o600)
    assert owner_mode(tree / "Server" / "world" / "new.bin")[:2] == (UID, GID)
    assert third.scanned == again.scanned + 1


def test_stamp_round_trip_and_planted_symlink(tree: Path, tmp_path: Path) -> None:
    from entrypoint.stamp import Stamp

    stamp = Stamp(str(tree), UID, GID)
    assert stamp.previous_ns() is None
    stamp.record()
    assert isinstance(stamp.previous_ns(), int)
    assert Stamp(str(tree), UID, GID + 1).previous_ns() is None  # other owner: no trust
    assert prepare_tree(str(tree), UID, GID).failed == 0
    assert prepare_tree(str(tree), UID, GID).changed == 0  # the stamp itself is correct
    # A .hyos planted as a symlink: the stamp is not written through it.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.rmtree(tree / ".hyos")
    (tree / ".hyos").symlink_to(elsewhere, target_is_directory=True)
    Stamp(str(tree), UID, GID).record()
    assert list(elsewhere.iterdir()) == []
    assert elsewhere.stat().st_uid == 0
