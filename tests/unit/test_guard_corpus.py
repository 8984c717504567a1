"""Every shape of the adversarial corpus through the real guard shell, against a fake
engine that parses whatever reaches it like dockerd (keep-alive included): the guard's
answer must be the expected decision, a denied request must never reach the engine, and an
allowed one must reach exactly the endpoint its rule names (per the model of Docker's
routing), on the stack's server, with a body we encoded."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
from anyio.from_thread import start_blocking_portal

from supervisor import guard_rules as r
from supervisor.guard import serve_guard
from tests import docker_model
from tests.guardkit import EXEC_OK, EXEC_ROOT, SERVER_ID, STACK, FakeDockerd, fake_dockerd
from tests.guardkit import raw_request as send
from tests.unit.guard_corpus import UA, Case, corpus

CASES = corpus()
GRACE = 30
CONTAINER_RULES = {
    "container-inspect", "container-logs", "container-stats", "container-start",
    "container-stop", "container-restart", "exec-create",
}  # fmt: skip


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, FakeDockerd]]:
    tmp = tmp_path_factory.mktemp("corpus")
    with fake_dockerd(tmp) as engine, start_blocking_portal() as portal:
        sock = tmp / "guard.sock"
        policy = r.Policy(STACK, min_stop_timeout=GRACE)
        future, _ = portal.start_task(partial(serve_guard, sock, engine.path, policy, os.getgid()))
        try:
            yield sock, engine
        finally:
            future.cancel()


def test_the_corpus_is_large_and_covers_every_family() -> None:
    assert len(CASES) >= 500
    assert len({c.name for c in CASES}) == len(CASES)
    allowed = {c.expect for c in CASES if c.expect.startswith("allow:")}
    assert len(allowed) == 13  # every rule of the allowlist is reached
    denied = {c.expect.split(":")[1] for c in CASES if c.expect.startswith("deny:")}
    assert len(denied) >= 20


def _status(out: bytes) -> int:
    parts = out.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_corpus(served: tuple[Path, FakeDockerd], case: Case) -> None:
    sock, engine = served
    before = len(engine.seen)
    out = send(sock, case.raw, half_close=True)
    new = engine.seen[before:]
    forwarded = [s for s in new if s.headers.get("user-agent") == UA]
    assert not any("volumes" in s.target for s in new), "a smuggled request reached the engine"
    verdict, rule, *status = case.expect.split(":")
    if verdict == "deny":
        assert _status(out) == int(status[0]) if status else _status(out) == 403, out[:300]
        assert json.loads(out.partition(b"\r\n\r\n")[2])["message"].startswith(
            f"denied by rule '{rule}'"
        ), out[:300]
        assert forwarded == [], "a denied request reached the engine"
        return
    assert _status(out) in (101, 200), out[:300]
    assert len(forwarded) == 1, [s.target for s in forwarded]
    sent = forwarded[0]
    routed = docker_model.route(sent.method, sent.target)
    assert routed is not None and routed.endpoint == rule, (sent.target, routed)
    if rule in CONTAINER_RULES:
        assert routed.name == SERVER_ID
    if rule in ("exec-start", "exec-inspect"):
        assert routed.name in (EXEC_OK, EXEC_ROOT)
    if rule in ("container-stop", "container-restart"):
        t = int(routed.query["t"][0])
        assert t >= GRACE or t < 0
        assert not any(k.casefold() == "signal" for k in routed.query)
    if rule in ("container-list", "events"):
        labels = json.loads(routed.query["filters"][0])["label"]
        assert f"io.hyos.stack={STACK}" in labels and "io.hyos.role=server" in labels
    if sent.body:
        assert rule in ("exec-create", "exec-start")
        assert sent.headers["content-type"] == "application/json"
        body = json.loads(sent.body)
        assert body.get("Privileged", False) is False
        assert r.user_allowed(body.get("User", ""))
        assert sent.body == json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
    else:
        assert rule not in ("exec-create", "exec-start")
