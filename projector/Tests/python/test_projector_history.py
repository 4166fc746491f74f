"""gavel-projector against a `gavel serve` whose journal is no longer the history the read model was built from: a
data directory restored from a backup taken before entries the read model applied. The projector keeps the server's
feed_mark of its position and sends it back as `expect`; the server refuses (`feed_history_diverged`), and the
projector stops with exit status 1, says to rebuild the read model, and writes nothing."""

import shutil

import psycopg
import pytest

from conftest import eventually, position, query
# server_at is a fixture: imported, it serves this module too.
from test_projector_gavel import GAVEL, _serves_the_feed, head_lsn, server_at, traffic  # noqa: F401

pytestmark = pytest.mark.skipif(not _serves_the_feed(), reason=f"{GAVEL} has no subscribe_feed (gavel serve --help)")

TABLES = ("listings", "bids", "trades", "settlements", "settlement_transitions")
# Far enough that no listing closes during a test: no timer entries between the steps.
OPEN_FOR_MS = 600_000


def read_model(url):
    """Everything the projector writes: the position row (with its updated_at) and every table's rows."""
    return {
        "position": query(url, "SELECT lsn, mark_lsn, mark_chain, updated_at FROM feed_position"),
        "rows": {table: query(url, f"SELECT * FROM {table} ORDER BY 1, 2") for table in TABLES},
    }


def project_to_the_end(server, projector, database):
    """Stops the server, reads its last lsn, starts it again and waits for the projector (which reconnects by
    itself) to reach it. Returns that lsn."""
    server.stop()
    head = head_lsn(server.data_dir)
    server.start()
    assert eventually(lambda: (position(database) or 0) >= head, seconds=90), projector.log_text()
    return head


def a_read_model_ahead_of_a_backup(server_at, database, projectors, tmp_path):
    """A read model that applied every entry of a server, some of them after a backup of its data directory was
    taken; then the server stopped and its data directory replaced with the backup. Returns the server (stopped)
    and the read model's position."""
    data = tmp_path / "data"
    server = server_at(data)
    projector = projectors(server.ws_url(), database).start()
    traffic(server, listings=4, bids=60, seed=11, closes_in_ms=OPEN_FOR_MS)
    project_to_the_end(server, projector, database)
    server.stop()
    shutil.copytree(data, tmp_path / "backup")
    server.start()
    traffic(server, listings=4, bids=80, seed=12, closes_in_ms=OPEN_FOR_MS)
    applied = project_to_the_end(server, projector, database)
    projector.stop()
    server.stop()
    shutil.rmtree(data)
    shutil.copytree(tmp_path / "backup", data)
    return server, applied


def assert_stops_on_another_history(projector, database, before, says):
    assert projector.process.wait(60) == 1, projector.log_text()
    log = projector.log_text()
    assert "the server's journal is not the history this read model was built from" in log, log
    assert "rebuild it from an empty database" in log
    assert says in log, log
    assert read_model(database) == before, "the projector wrote nothing"


def test_a_restored_backup_that_went_on_with_other_entries_stops_the_projector_which_writes_nothing(
        server_at, database, projectors, tmp_path):
    server, applied = a_read_model_ahead_of_a_backup(server_at, database, projectors, tmp_path)
    before = read_model(database)
    lsn, mark_lsn, chain, _ = before["position"][0]
    assert lsn == position(database) >= applied
    assert mark_lsn >= lsn and len(chain) == 64, "the position keeps the mark of its journal batch"
    server.start()
    # Other entries than the lost ones, well past the read model's position.
    traffic(server, listings=4, bids=250, seed=13, closes_in_ms=OPEN_FOR_MS)
    server.stop()
    assert head_lsn(server.data_dir) > mark_lsn
    server.start()
    projector = projectors(server.ws_url(), database).start()
    assert_stops_on_another_history(projector, database, before, f"this server's batch that holds lsn {lsn}")


def test_a_restored_backup_behind_the_read_models_position_stops_the_projector_which_writes_nothing(
        server_at, database, projectors, tmp_path):
    server, applied = a_read_model_ahead_of_a_backup(server_at, database, projectors, tmp_path)
    before = read_model(database)
    assert head_lsn(server.data_dir) < before["position"][0][0]
    server.start()
    projector = projectors(server.ws_url(), database).start()
    assert_stops_on_another_history(projector, database, before, "past this server's journal")


def test_a_read_model_from_before_marks_resumes_unchecked_then_keeps_the_mark_and_is_checked(
        server_at, database, projectors, tmp_path):
    server = server_at(tmp_path / "data")
    projector = projectors(server.ws_url(), database).start()
    traffic(server, listings=3, bids=30, seed=21, closes_in_ms=OPEN_FOR_MS)
    project_to_the_end(server, projector, database)
    projector.stop()
    # Back to schema version 3: the read model as a projector before version 4 left it.
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("ALTER TABLE feed_position DROP CONSTRAINT feed_position_mark, DROP COLUMN mark_lsn, "
                     "DROP COLUMN mark_chain")
        conn.execute("DELETE FROM schema_migrations WHERE version = 4")
    projector = projectors(server.ws_url(), database).start()
    assert eventually(lambda: projector.metric("gavel_projector_live") == 1, seconds=30), projector.log_text()
    log = projector.log_text()
    assert "migrated the read model" in log and "version=4" in log
    assert "expect=none" in log, "no mark yet: it resumes without the check"
    traffic(server, listings=1, bids=10, seed=22, closes_in_ms=OPEN_FOR_MS)
    project_to_the_end(server, projector, database)
    lsn, mark_lsn, chain = query(database, "SELECT lsn, mark_lsn, mark_chain FROM feed_position")[0]
    assert mark_lsn >= lsn and len(chain) == 64
    projector.stop()
    # From now on it resumes with the mark, which the server holds.
    projector = projectors(server.ws_url(), database).start()
    traffic(server, listings=1, bids=10, seed=23, closes_in_ms=OPEN_FOR_MS)
    head = project_to_the_end(server, projector, database)
    assert f"expect={mark_lsn}" in projector.log_text()
    assert projector.process.poll() is None
    assert query(database, "SELECT count(*) FROM bids WHERE listing LIKE %s", "P23-%")[0][0] > 0
    assert (position(database) or 0) >= head
