"""One service's exits and health, judged: each exit accounted once, explained from
HyOS's state files where its code alone is ambiguous, turned into the state machine's
decision (saved before anything is done about it) and announced to the operator. The
step the decision leaves pending is the worker's to carry out. A crash or an unhealthy
run that is acted on is handed to `report` (the worker gathers a crash report beside the
restart: supervisor/crashes.py), with the decisions recently taken for the service."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from supervisor import alerts, crashreport, hyos, restarts, roles, stopmarks, totals
from supervisor.dockertypes import ContainerExit, EngineError
from supervisor.logs import BoundLogger
from supervisor.restarts import Action, ExitKind
from supervisor.store import Service
from supervisor.supervision import Supervision

# Decisions kept for crash reports (in memory: a report shows what this daemon decided).
RECENT_DECISIONS = 20


class ExitAccounting:
    def __init__(self, sup: Supervision, service: Service) -> None:
        self.sup = sup
        self.service = service
        self.role = service.role
        self.log: BoundLogger = sup.log.bind(service=service.role)
        self.decisions: deque[dict[str, Any]] = deque(maxlen=RECENT_DECISIONS)
        # Set by the worker: starts a crash report's gathering without waiting for it.
        self.report: Callable[[crashreport.CrashFacts], None] = lambda facts: None

    def _decided(self, trigger: str, decision: restarts.Decision, **more: Any) -> dict[str, Any]:
        entry = {
            "at": self.sup.clock(),
            "trigger": trigger,
            "action": decision.action.value,
            "backoff_s": decision.backoff_s,
            "reason": decision.reason,
            "restart_count": self.service.restart.restart_count,
            "status": self.service.restart.status.value,
            **more,
        }
        self.decisions.append(entry)
        return entry

    def _report(
        self,
        trigger: str,
        container_id: str,
        name: str,
        died_at: float,
        judged: dict[str, Any],
        decided: dict[str, Any],
    ) -> str | None:
        """Start gathering a crash report; its id (the crash notification names it), or
        None when reports are off."""
        if not self.sup.settings.crashes.enabled:
            return None
        facts = crashreport.CrashFacts(
            role=self.role,
            container_id=container_id,
            container_name=name,
            died_at=died_at,
            trigger=trigger,
            judgement=judged,
            decision={
                **decided,
                "restart": self.service.restart.to_json(),
                "totals": self.service.totals.to_json(),
            },
            decisions=list(self.decisions),
        )
        self.report(facts)
        return facts.report_id

    async def on_exit(self, exited: ContainerExit, log: BoundLogger) -> None:
        """Account one exit (once) and decide; the decision's step is left pending."""
        service = self.service
        if exited.finished_at == service.last_finished_at:
            return  # this exit is already accounted for
        service.last_finished_at = exited.finished_at
        service.health = None
        judged = await self.judge(exited)
        service.last_exit = judged
        before = service.restart
        service.restart, decision = restarts.on_exit(
            before,
            judged.kind,
            self.sup.clock(),
            self.sup.policy,
            reason=judged.reason,
            container=exited.name,
        )
        service.totals = totals.after_exit(service.totals, judged, before, service.restart)
        # Persist the decision before logging or acting on it: a kill -9 can come at any
        # moment (fsync under load takes tens of ms), and the next daemon must resume it.
        self.sup.save()
        fields = {
            "exit_code": judged.exit_code,
            "oom_killed": judged.oom_killed,
            "restart_count": service.restart.restart_count,
            "backoff_s": decision.backoff_s,
            "reason": judged.reason,
            "decision": decision.action.value,
            "exit_kind": judged.kind.value,
            "signal": judged.signal,
        }
        level = logging.INFO if judged.kind is ExitKind.CLEAN else logging.WARNING
        log.log(level, "exited", extra=fields)
        decided = self._decided(
            "exit", decision, exit_code=judged.exit_code, kind=judged.kind.value
        )
        report = None
        if judged.failure and not self.sup.stopping:
            died_at = exited.finished_at.timestamp() if exited.finished_at else self.sup.clock()
            report = self._report(
                "exit",
                exited.container_id,
                exited.name,
                died_at,
                judged.to_json(),
                decided,
            )
        if not self.sup.stopping:
            self._notify(decision, judged.exit_code, report)
            await self._announce(decision, log)

    async def judge(self, exited: ContainerExit) -> restarts.ExitJudgement:
        """The one judgement of this exit: its code, signal and OOM kill, whether it was
        asked for (consuming the stop's mark), and what HyOS's state files say of it."""
        service = self.service
        service.stop_requested, requested = stopmarks.on_exit(
            service.stop_requested, exited.container_id, stopmarks.moment(exited.finished_at)
        )
        asked = requested or self.sup.stopping
        code, oom = exited.exit_code, exited.oom_killed
        explained = None if asked or oom else await self._explain_exit(exited.container_id, code)
        return restarts.judge_exit(self.role, code, oom, asked, explained)

    async def _explain_exit(self, container_id: str, exit_code: int) -> hyos.ServerExit | None:
        """What HyOS's state files say about a server exit whose code alone is ambiguous
        (1: Java crashed, or the login ran out; 143: a stray SIGTERM, or the update
        button). Read through the engine from the stopped container's volume."""
        if not roles.is_game(self.role) or exit_code not in (1, 143):
            return None
        try:
            if exit_code == 1:
                raw = await self.sup.engine.read_file(container_id, hyos.AUTH_FILE)
                self.service.login = hyos.parse_login(raw)
                return hyos.explain_exit(exit_code, self.service.login, False)
            raw = await self.sup.engine.read_file(container_id, hyos.UPDATE_FILE)
            since = self.service.restart.started_at or 0.0
            return hyos.explain_exit(exit_code, None, hyos.update_started_since(raw, since))
        except EngineError as err:
            self.log.warning(
                "cannot read HyOS's state after an exit; judging by the code alone",
                extra={"error": str(err)},
            )
            return None

    def _notify(
        self, decision: restarts.Decision, exit_code: int | None, report: str | None = None
    ) -> None:
        """The decision, told through the outbox (supervisor/alerts.py keeps it to one
        message per crash episode), naming its crash report."""
        if decision.action in (Action.RESTART, Action.STOP_CRASH_LOOP):
            self.sup.alerts.failure(
                self.role,
                reason=decision.reason,
                exit_code=exit_code,
                crash_loop=decision.action is Action.STOP_CRASH_LOOP,
                report=report,
            )
        elif decision.action is Action.NEEDS_AUTH:
            self.sup.alerts.emit(
                alerts.needs_auth(
                    self.sup.settings.stack,
                    self.role,
                    self.sup.clock(),
                    url=None,
                    code=None,
                    reason=decision.reason,
                )
            )

    async def _announce(self, decision: restarts.Decision, log: BoundLogger) -> None:
        """What the operator must know of a decision; the step itself is pending."""
        if decision.action in (Action.RESTART, Action.RETRY_LOGIN) and decision.message:
            log.warning(decision.message, extra={"reason": decision.reason})
        elif decision.action is Action.INSTALL_UPDATE:
            log.info("installing the update the dashboard asked for")
        elif decision.action is Action.STOP_CRASH_LOOP:
            lines = await self.sup.engine.logs_tail(
                self.service.container_id or "", self.sup.policy.crash_loop_log_lines
            )
            log.error(
                "crash loop: not restarting; the container is kept for inspection. "
                f"Fix the cause, then run `hyos-supervisor restart {self.role}`",
                extra={"reason": decision.reason, "last_logs": lines},
            )
        elif decision.action is Action.NEEDS_AUTH:
            log.error(decision.message, extra={"reason": decision.reason})

    async def on_unhealthy(self, log: BoundLogger) -> None:
        info = await self.sup.engine.inspect(self.service.container_id or "")
        if info is None:
            return
        started = info.state.started_at
        before = self.service.restart
        self.service.restart, decision = restarts.on_unhealthy(
            before,
            self.sup.clock(),
            started.timestamp() if started is not None else 0.0,
            info.health_start_period_s,
            self.sup.stopping,
            self.sup.policy,
        )
        self.service.totals = totals.after_unhealthy(
            self.service.totals, decision, before, self.service.restart
        )
        self.sup.save()  # the decision first (see on_exit)
        log.warning(
            "unhealthy",
            extra={
                "decision": decision.action.value,
                "restart_count": self.service.restart.restart_count,
            },
        )
        decided = self._decided("unhealthy", decision)
        report = None
        if decision.action is not Action.NONE:
            health = info.state.health
            judged = {
                "kind": "unhealthy",
                "exit_code": None,
                "signal": None,
                "oom_killed": info.state.oom_killed,
                "reason": "health check failing"
                + (
                    f": {health.last_output.strip()[:500]}" if health and health.last_output else ""
                ),
            }
            report = self._report(
                "unhealthy", info.id, info.name, self.sup.clock(), judged, decided
            )
        self._notify(decision, None, report)
        if decision.action is not Action.RESTART:
            await self._announce(decision, log)
