"""The `[update]` settings table (env `HYOS_UPDATE__*`): when and how the game is updated
(supervisor/update.py decides, supervisor/updater.py carries it out).

Kept out of settings.py so that module only names it; validated the same way: a bad value
is one line naming the field and the fix, exit 78, before anything is touched.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from supervisor.drainsettings import Schedule

__all__ = ["UpdateSettings"]


class UpdateSettings(BaseModel):
    """Updates of the game as transactions (issue 26)."""

    model_config = ConfigDict(extra="forbid")

    # A window in which an available update is applied (drained like a restart): a cron
    # line (`30 4 * * *`) or `daily HH:MM`, in `[schedule] timezone`. None: no window.
    window: Schedule = None
    # Check for a newer version (HyOS's version.json) every `check_every_s` and apply it
    # by itself: at the next window when one is set, else at once (drained).
    auto: bool = False
    # How long the new version must stay healthy (REST /health answering, server.json
    # `running`) before the update is confirmed.
    gate_s: float = Field(default=120.0, ge=1, le=3600, allow_inf_nan=False)
    # How long the new version may take to become healthy at all (HyOS's health check's
    # start period is 180 s; a first install downloads the game).
    ready_s: float = Field(default=600.0, ge=5, le=7200, allow_inf_nan=False)
    # How long the pre-update snapshot stays pinned after a confirmed update; then it is
    # released to the `[backup]` retention like any other snapshot.
    keep_days: float = Field(default=7.0, ge=0, le=3650, allow_inf_nan=False)
    # Between two looks at HyOS's version.json (HyOS refreshes it hourly).
    check_every_s: float = Field(default=3600.0, ge=60, le=86400, allow_inf_nan=False)
