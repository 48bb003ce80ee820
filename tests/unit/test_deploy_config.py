"""docker-compose.yml against what the platform is: every service the launcher runs has a container,
connecting to NATS as its own user of deploy/nats-permissions.conf, whose password NATS is given."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.launcher.__main__ import SERVICES

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = (ROOT / "docker-compose.yml").read_text()
PERMISSIONS = (ROOT / "deploy" / "nats-permissions.conf").read_text()


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_runs_in_compose_as_its_own_nats_user(service: str) -> None:
    password = f"FANOUT_NATS_{service.upper()}_PASSWORD"
    assert f'command: ["python", "-m", "services.{service}"]' in COMPOSE, f"no {service} container"
    assert f"FANOUT_NATS_URL: nats://{service}:${{{password}}}@nats:4222" in COMPOSE
    assert f"{password}: ${{{password}:?" in COMPOSE, "NATS is not given the password (or runs without one)"
    assert f"user: {service}\n" in PERMISSIONS and f"password: ${password}\n" in PERMISSIONS


def test_compose_nats_runs_the_permissions_file_and_nothing_connects_anonymously() -> None:
    assert "./deploy/nats-permissions.conf:/etc/nats/nats.conf:ro" in COMPOSE
    assert "nats://nats:4222" not in COMPOSE
