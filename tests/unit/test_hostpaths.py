"""One rule for sensitive host paths: settings refuse them as data, audit fails their binds."""

from __future__ import annotations

import pytest

from supervisor import hostpaths
from supervisor.settings import ConfigError, load_settings


@pytest.mark.parametrize(
    ("path", "sensitive"),
    [
        ("/", True),
        ("//", True),
        ("/etc", True),
        ("/etc/", True),
        ("//etc/x", True),
        ("/usr/../etc", True),
        ("/run/docker.sock", True),
        ("/run/anything", True),
        ("/var/run", True),
        ("/var/lib/docker/volumes/x", True),
        ("/srv/hyos", False),
        ("/etcetera", False),
        ("/var/lib/hyos", False),
        ("/home/me/hytale", False),
    ],
)
def test_one_rule_for_settings_and_audit(path: str, sensitive: bool) -> None:
    assert hostpaths.is_sensitive(path) is sensitive
    try:
        load_settings(data=path)
        refused = False
    except ConfigError as err:
        refused = "sensitive" in err.problems[0]
    assert refused is sensitive
