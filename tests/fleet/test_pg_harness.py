"""The fleet suite's PostgreSQL starts, answers, and survives a crash."""
import pytest

from pg import Postgres


@pytest.fixture(scope="module")
def pg(tmp_path_factory):
    p = Postgres(str(tmp_path_factory.mktemp("pg")))
    yield p
    p.close()


def test_postgres_answers_and_recovers_from_kill(pg):
    pg.psql("CREATE TABLE t (id text PRIMARY KEY)")
    pg.psql("INSERT INTO t VALUES ('a') ON CONFLICT DO NOTHING")
    pg.kill()
    pg.start()
    assert pg.psql("SELECT id FROM t") == [["a"]]
