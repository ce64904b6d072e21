def test_enqueue_returns_an_id(db):
    row = db.execute("SELECT pyqueue.enqueue('emails', '{}')").fetchone()
    assert row[0] >= 1


def test_each_test_starts_empty(db):
    assert db.execute("SELECT count(*) FROM pyqueue.jobs").fetchone()[0] == 0
