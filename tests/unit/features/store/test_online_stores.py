"""The conflict rule and reads with status, on SQLite and on a real redis-server."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raypipe.features.store.online import (
    OnlineRow,
    OnlineStore,
    Status,
    StoreConfig,
    encode_values,
    open_store,
    to_micros,
)
from tests.support.redis import redis_url  # noqa: F401 - fixture

T0 = dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC)


@pytest.fixture(params=["sqlite", "redis"])
def store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OnlineStore]:
    if request.param == "sqlite":
        config = StoreConfig("sqlite", path=str(tmp_path_factory.mktemp("s") / "online.sqlite"))
    else:
        config = StoreConfig("redis", url=request.getfixturevalue("redis_url"))
    opened = open_store(config)
    yield opened
    opened.close()


def _row(entity: str, event: dt.datetime, created: int, value: float) -> OnlineRow:
    return OnlineRow(entity, to_micros(event), created, encode_values({"x": value}))


def _ns() -> str:
    return f"test@{uuid.uuid4().hex[:8]}"


def test_late_write_never_overwrites_a_newer_value(store: OnlineStore) -> None:
    ns = _ns()
    assert store.write(ns, [_row("1", T0, 0, 12.0)]) == 1
    assert store.write(ns, [_row("1", T0 - dt.timedelta(hours=1), 5, 11.0)]) == 0
    [value] = store.read(ns, ["1"], now=T0)
    assert value.status is Status.PRESENT and value.values == {"x": 12.0}
    assert value.event_ts == T0 and value.age_s == 0


def test_created_ts_breaks_ties_and_repeats_write_nothing(store: OnlineStore) -> None:
    ns = _ns()
    assert store.write(ns, [_row("1", T0, 10, 1.0)]) == 1
    assert store.write(ns, [_row("1", T0, 11, 2.0)]) == 1
    assert store.write(ns, [_row("1", T0, 11, 3.0)]) == 0
    assert store.write(ns, [_row("1", T0, 9, 4.0)]) == 0
    assert store.read(ns, ["1"], now=T0)[0].values == {"x": 2.0}


def test_reads_report_not_found_and_outside_max_age(store: OnlineStore) -> None:
    ns = _ns()
    store.write(
        ns,
        [
            _row("old", T0 - dt.timedelta(days=2), 0, 1.0),
            _row("new", T0 - dt.timedelta(hours=1), 0, 2.0),
        ],
    )
    values = store.read(ns, ["new", "missing", "old", "new"], max_age=dt.timedelta(days=1), now=T0)
    assert [v.status for v in values] == [
        Status.PRESENT,
        Status.NOT_FOUND,
        Status.OUTSIDE_MAX_AGE,
        Status.PRESENT,
    ]
    assert values[0].age_s == pytest.approx(3600)
    assert values[1].values is None and values[1].age_s is None
    assert values[2].values == {"x": 1.0}  # returned for debugging, flagged by the status
    # Exactly at the max age is still present (expired means strictly older).
    edge = store.read(ns, ["old"], max_age=dt.timedelta(days=2), now=T0)
    assert edge[0].status is Status.PRESENT


def test_namespaces_do_not_mix(store: OnlineStore) -> None:
    a, b = _ns(), _ns()
    store.write(a, [_row("1", T0, 0, 1.0)])
    assert store.read(b, ["1"])[0].status is Status.NOT_FOUND


def test_batch_write_many_entities(store: OnlineStore) -> None:
    ns = _ns()
    rows = [_row(str(i), T0, 0, float(i)) for i in range(2500)]
    assert store.write(ns, rows) == 2500
    assert store.write(ns, rows) == 0
    values = store.read(ns, [str(i) for i in range(0, 2500, 7)], now=T0)
    assert [v.values["x"] for v in values if v.values] == [float(i) for i in range(0, 2500, 7)]


events = st.lists(
    st.tuples(st.sampled_from("abc"), st.integers(0, 20), st.integers(0, 3), st.floats(0, 9)),
    min_size=1,
    max_size=30,
)


# Each example writes to a fresh namespace, so sharing the store between examples is safe.
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(writes=events, batch=st.integers(1, 5))
def test_any_write_order_keeps_the_newest(store: OnlineStore, writes: list, batch: int) -> None:
    ns = _ns()
    for start in range(0, len(writes), batch):
        store.write(
            ns,
            [
                OnlineRow(e, ts, c, encode_values({"x": v}))
                for e, ts, c, v in writes[start : start + batch]
            ],
        )
    for entity in "abc":
        mine = [(ts, c) for e, ts, c, _ in writes if e == entity]
        [value] = store.read(ns, [entity], now=T0)
        if not mine:
            assert value.status is Status.NOT_FOUND
            continue
        newest = max(mine)
        # The first write of the newest (event, created) pair wins; later equal pairs do not.
        expected = next(v for e, ts, c, v in writes if e == entity and (ts, c) == newest)
        assert value.values == {"x": expected}


def test_redis_reads_reconnect_after_the_connection_is_dropped(
    redis_url: str,  # noqa: F811 - fixture
) -> None:
    import redis

    from raypipe.features.store.redis_store import RedisOnlineStore

    store = RedisOnlineStore(redis_url)
    try:
        ns = _ns()
        store.write(ns, [_row("1", T0, 0, 3.0)])
        assert store.read(ns, ["1"], now=T0)[0].values == {"x": 3.0}
        # The server drops every other client, including the connection held for reads.
        killed = redis.Redis.from_url(redis_url).client_kill_filter(_type="normal", skipme=True)
        assert killed >= 1
        [value] = store.read(ns, ["1"], now=T0)
        assert value.status is Status.PRESENT and value.values == {"x": 3.0}
    finally:
        store.close()


def test_redis_keys_expire_at_event_time_plus_expiry_and_never_while_present(
    redis_url: str,  # noqa: F811 - fixture
) -> None:
    import redis

    from raypipe.features.store.online import EXPIRY_MARGIN, expiry_of

    store = open_store(StoreConfig("redis", url=redis_url))
    client = redis.Redis.from_url(redis_url)
    try:
        ns = _ns()
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        max_age = dt.timedelta(hours=1)
        expiry = expiry_of(max_age.total_seconds())
        assert expiry == max_age + EXPIRY_MARGIN
        fresh, stale, gone = now, now - max_age * 2, now - max_age - EXPIRY_MARGIN * 2
        rows = [_row("fresh", fresh, 0, 1.0), _row("stale", stale, 0, 2.0)]
        rows.append(_row("gone", gone, 0, 3.0))
        store.write(ns, rows, expire_after=expiry)
        expire_ms = client.pexpiretime(f"rp:{ns}:fresh")
        assert expire_ms == int((fresh + expiry).timestamp() * 1000)
        statuses = [v.status for v in store.read(ns, ["fresh", "stale", "gone"], max_age=max_age)]
        # Present values are kept; past max age still readable (status says so) until the
        # margin has passed too, then the key is gone.
        assert statuses == [Status.PRESENT, Status.OUTSIDE_MAX_AGE, Status.NOT_FOUND]
        store.write(ns, [_row("plain", now, 0, 4.0)])
        assert client.pttl(f"rp:{ns}:plain") == -1  # no expiry asked: none set
    finally:
        store.close()


def test_sqlite_keeps_rows_whatever_the_expiry(tmp_path) -> None:
    store = open_store(StoreConfig("sqlite", path=str(tmp_path / "o.sqlite")))
    try:
        old = T0 - dt.timedelta(days=400)
        store.write("ns", [_row("1", old, 0, 1.0)], expire_after=dt.timedelta(seconds=1))
        [value] = store.read("ns", ["1"], max_age=dt.timedelta(days=1), now=T0)
        assert value.status is Status.OUTSIDE_MAX_AGE
    finally:
        store.close()


def _open_and_write(path: str, start: Any, errors: Any, entity: str) -> None:
    from raypipe.features.store.sqlite_store import SqliteOnlineStore

    start.wait()
    try:
        SqliteOnlineStore(path).write("v", [OnlineRow(entity, 1, 1, "{}")])
    except Exception as exc:  # reported to the test, which names it
        errors.put(repr(exc))


def test_two_processes_opening_a_new_sqlite_store_at_once_both_write(tmp_path) -> None:
    # Two materialize tasks open the same new file at once. Switching it to WAL takes a lock for
    # which SQLite calls no busy handler: without waiting for it, about one opening in seven
    # failed with "database is locked".
    import multiprocessing

    context = multiprocessing.get_context("fork")
    errors = context.Queue()
    for trial in range(20):
        path = str(tmp_path / f"online-{trial}.sqlite")
        start = context.Barrier(2)
        writers = [
            context.Process(target=_open_and_write, args=(path, start, errors, str(k)))
            for k in range(2)
        ]
        for writer in writers:
            writer.start()
        for writer in writers:
            writer.join(60)
        assert errors.empty(), errors.get()
        rows = open_store(StoreConfig("sqlite", path=path)).read("v", ["0", "1"])
        assert [row.status for row in rows] == [Status.PRESENT, Status.PRESENT]
