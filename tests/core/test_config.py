from __future__ import annotations

import json

import pytest

from tenant_metrics.core.config import database_url, get_int
from tenant_metrics.core.errors import ConfigError


def test_database_url_wins_and_postgres_scheme_is_rewritten() -> None:
    assert database_url({"DATABASE_URL": "postgres://u:p@h:5432/d"}) == "postgresql+psycopg://u:p@h:5432/d"


def test_first_postgres_binding_in_vcap_services() -> None:
    vcap = {
        "user-provided": [{"credentials": {"uri": "https://example"}, "tags": []}],
        "postgres": [{"label": "postgres", "tags": ["postgres"], "credentials": {"uri": "postgres://a:b@db:5432/x"}}],
    }
    assert database_url({"VCAP_SERVICES": json.dumps(vcap)}) == "postgresql+psycopg://a:b@db:5432/x"


def test_vcap_services_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "vcap"
    path.write_text(json.dumps({"postgresql": [{"credentials": {"uri": "postgresql://a@h/d"}}]}))
    assert database_url({"VCAP_SERVICES_FILE_PATH": str(path)}) == "postgresql+psycopg://a@h/d"


def test_default_is_a_sqlite_file_in_cwd(tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert database_url({}, cwd=str(tmp_path)) == f"sqlite:///{tmp_path}/tenant-metrics.sqlite3"


def test_bad_vcap_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="VCAP_SERVICES"):
        database_url({"VCAP_SERVICES": "{nope"})


def test_bad_int_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="SD_INTERVAL_SECONDS"):
        get_int({"SD_INTERVAL_SECONDS": "soon"}, "SD_INTERVAL_SECONDS", 60)
