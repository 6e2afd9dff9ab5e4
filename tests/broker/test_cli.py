"""Operator commands: `tenant-metrics instances --org` and `tenant-metrics revoke`."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from tenant_metrics.cli import main
from tenant_metrics.core.db import make_engine
from tenant_metrics.core.models import AuditEvent, Binding
from tests.broker.conftest import Osb


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """main() points the root logger at this test's captured stdout; put it back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_instances_lists_an_orgs_instances_and_bindings_without_secrets(
    osb: Osb, database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    osb.provision("inst-1", osb.provision_body(org="org-a"))
    osb.provision("inst-2", osb.provision_body(org="org-b"))
    creds = osb.bind("inst-1", "bind-1").json()["credentials"]
    osb.bind("inst-1", "key-1", osb.bind_body(app_guid=None))
    monkeypatch.setenv("DATABASE_URL", database_url)
    capsys.readouterr()
    assert main(["instances", "--org", "org-a", "--json"]) == 0
    out = capsys.readouterr().out
    listed = json.loads(out)
    assert [i["instance_id"] for i in listed] == ["inst-1"]
    assert [(b["binding_id"], b["kind"]) for b in listed[0]["bindings"]] == [("bind-1", "app"), ("key-1", "key")]
    assert creds["password"] not in out
    assert main(["instances", "--org", "org-a"]) == 0
    table = capsys.readouterr().out
    assert "inst-1" in table and "bind-1" in table and creds["password"] not in table
    assert main(["instances", "--org", "org-none"]) == 0
    assert "no metrics instances" in capsys.readouterr().out


def test_revoke_deletes_a_binding_and_audits_the_operator(
    osb: Osb, database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    osb.provision("inst-1")
    osb.bind("inst-1", "bind-1")
    monkeypatch.setenv("DATABASE_URL", database_url)
    assert main(["revoke", "bind-1"]) == 0
    assert "revoked binding bind-1" in capsys.readouterr().out
    engine = make_engine(database_url)
    try:
        with Session(engine) as s:
            assert s.get(Binding, "bind-1") is None
            last = s.scalars(select(AuditEvent).order_by(AuditEvent.id.desc())).first()
            assert last is not None and (last.action, last.user_id, last.binding_id) == ("revoke", "operator", "bind-1")
    finally:
        engine.dispose()
    assert main(["revoke", "bind-1"]) == 1
    assert "does not exist" in capsys.readouterr().err
    # Cloud Controller's later unbind finds it gone.
    assert osb.unbind("inst-1", "bind-1").status_code == 410
