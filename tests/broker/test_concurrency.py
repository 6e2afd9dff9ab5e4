"""Cloud Controller retries: many identical requests at once give one record and never a 500."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import requests
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from broker.config import BrokerSettings
from tenant_metrics.core.db import make_engine
from tenant_metrics.core.models import AuditEvent, Binding, ServiceInstance
from tests.broker.conftest import Osb

THREADS = 16


def _at_once(call: Callable[[Osb], requests.Response], osb: Osb) -> list[requests.Response]:
    barrier = threading.Barrier(THREADS)

    def run(_: int) -> requests.Response:
        client = Osb(osb.base, osb.settings)  # one connection each, like separate CC workers
        barrier.wait()
        try:
            return call(client)
        finally:
            client.session.close()

    with ThreadPoolExecutor(THREADS) as pool:
        return list(pool.map(run, range(THREADS)))


def _count(settings: BrokerSettings, model: type) -> int:
    engine = make_engine(settings.database_url)
    try:
        with Session(engine) as s:
            return int(s.scalar(select(func.count()).select_from(model)) or 0)
    finally:
        engine.dispose()


def test_identical_provisions_and_binds_at_once(osb: Osb, settings: BrokerSettings) -> None:
    provisions = _at_once(lambda c: c.provision("inst-1"), osb)
    codes = sorted(r.status_code for r in provisions)
    assert codes == [200] * (THREADS - 1) + [201], [r.text for r in provisions]
    assert _count(settings, ServiceInstance) == 1

    binds = _at_once(lambda c: c.bind("inst-1", "bind-1"), osb)
    codes = sorted(r.status_code for r in binds)
    assert codes == [200] * (THREADS - 1) + [201], [r.text for r in binds]
    assert len({r.json()["credentials"]["password"] for r in binds}) == 1
    assert len({r.json()["credentials"]["username"] for r in binds}) == 1
    assert _count(settings, Binding) == 1
    assert _count(settings, AuditEvent) == 2  # one provision, one bind: repeats change nothing


def test_conflicting_provisions_at_once_never_500(osb: Osb, settings: BrokerSettings) -> None:
    plans = [osb.space_plan, osb.org_plan]
    counter = iter(range(THREADS))
    lock = threading.Lock()

    def provision(c: Osb) -> requests.Response:
        with lock:
            i = next(counter)
        return c.provision("inst-1", c.provision_body(plan=plans[i % 2]))

    results = _at_once(provision, osb)
    codes = [r.status_code for r in results]
    assert codes.count(201) == 1 and set(codes) <= {200, 201, 409}, codes
    assert _count(settings, ServiceInstance) == 1


def test_concurrent_deletes_one_wins_rest_are_gone(osb: Osb, settings: BrokerSettings) -> None:
    osb.provision("inst-1")
    osb.bind("inst-1", "bind-1")
    unbinds = _at_once(lambda c: c.unbind("inst-1", "bind-1"), osb)
    assert sorted(r.status_code for r in unbinds) == [200] + [410] * (THREADS - 1)
    deprovisions = _at_once(lambda c: c.deprovision("inst-1"), osb)
    assert sorted(r.status_code for r in deprovisions) == [200] + [410] * (THREADS - 1)
    assert _count(settings, ServiceInstance) == 0 and _count(settings, Binding) == 0


ROUNDS = 6


def test_deprovision_audit_lists_exactly_the_bindings_removed_under_racing_binds(
    osb: Osb, settings: BrokerSettings
) -> None:
    """Binds racing one deprovision: its audit event names every binding that was created
    (each bind that answered 201) and nothing else, whatever the interleaving."""
    from broker.store import Store

    store = Store(make_engine(settings.database_url))
    try:
        for round_ in range(ROUNDS):
            iid = f"race-{round_}"
            assert osb.provision(iid).status_code == 201
            assert osb.bind(iid, f"{iid}-early").status_code == 201
            counter = iter(range(THREADS))
            lock = threading.Lock()

            def bind_or_deprovision(c: Osb, iid: str = iid, round_: int = round_) -> requests.Response:
                with lock:
                    i = next(counter)
                if i == THREADS // 2:
                    time.sleep(0.002 * round_)  # move the deprovision around among the binds
                    return c.deprovision(iid)
                return c.bind(iid, f"{iid}-b{i:02d}")

            results = _at_once(bind_or_deprovision, osb)
            deprovision = [r for r in results if r.request.method == "DELETE"]
            binds = [r for r in results if r.request.method == "PUT"]
            assert [r.status_code for r in deprovision] == [200], deprovision[0].text
            assert {r.status_code for r in binds} <= {201, 404}, [r.text for r in binds]
            created = {f"{iid}-early"} | {r.request.url.rsplit("/", 1)[1] for r in binds if r.status_code == 201}

            events = store.audit_events(iid)
            (revoked,) = [e["details"]["revoked_bindings"] for e in events if e["action"] == "deprovision"]
            bound = {e["binding_id"] for e in events if e["action"] == "bind"}
            assert sorted(revoked) == sorted(created) == sorted(bound), (round_, revoked, created, bound)
        assert _count(settings, Binding) == 0 and _count(settings, ServiceInstance) == 0
    finally:
        store.engine.dispose()
