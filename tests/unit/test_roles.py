"""The role vocabulary: what the rest of the code reads from it holds together."""

from __future__ import annotations

from supervisor import roles, secretspec
from supervisor.roles import Kind, Role
from supervisor.settings import Settings


def test_the_services_are_the_service_roles_in_start_order() -> None:
    assert roles.SERVICES == (Role.SERVER, Role.MANAGER)
    assert roles.NAMES == ("server", "manager")
    assert all(type(name) is str for name in roles.NAMES)  # argparse shows and repr()s them


def test_a_job_is_a_kind_the_vocabulary_has_and_never_a_service() -> None:
    assert roles.PROFILES[Role.PREPARE].kind is Kind.JOB
    jobs = [p.role for p in roles.PROFILES.values() if p.kind is Kind.JOB]
    assert jobs and not set(jobs) & set(roles.SERVICES)


def test_every_secret_a_profile_names_exists() -> None:
    for profile in roles.PROFILES.values():
        assert set(profile.secrets) <= set(secretspec.BY_NAME), profile.role


def test_every_service_has_its_settings_section() -> None:
    settings = Settings()
    assert list(settings.services()) == list(roles.NAMES)
    for role, section in settings.services().items():
        assert section.role == role


def test_only_the_manager_waits_for_the_server_and_only_the_server_is_the_game() -> None:
    assert [r for r in roles.NAMES if roles.waits_for_server(r)] == ["manager"]
    assert [r for r in roles.NAMES if roles.is_game(r)] == ["server"]
    assert not roles.waits_for_server("no-such-role") and not roles.is_game("")
    assert roles.profile("no-such-role") is None


def test_the_operator_hears_the_services_as_a_list() -> None:
    assert roles.spoken() == "server or manager"
