"""Row ids: random version-4 UUIDs drawn from batches of random bytes."""

from __future__ import annotations

import os
import uuid

from app import models_base
from app.models_base import new_id


def test_ids_are_random_version_4_uuids_and_never_repeat():
    ids = [new_id() for _ in range(3 * 256 + 5)]  # across several reads of random bytes
    assert len(set(ids)) == len(ids)
    assert {i.version for i in ids} == {4}
    assert {i.variant for i in ids} == {uuid.RFC_4122}
    # Random bits vary in every position a version-4 UUID leaves random.
    varying = 0
    for i in ids:
        varying |= i.int ^ ids[0].int
    assert varying == ((1 << 128) - 1) & ~(0xF << 76 | 0x3 << 62)


def test_a_forked_child_does_not_repeat_its_parents_ids():
    new_id()  # the parent holds unused random bytes
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        os.write(write, new_id().bytes)
        os._exit(0)
    os.waitpid(child, 0)
    from_child = uuid.UUID(bytes=os.read(read, 16))
    os.close(read)
    os.close(write)
    assert from_child != new_id()


def test_ids_keep_coming_when_a_batch_runs_out(monkeypatch):
    reads: list[int] = []
    real = os.urandom

    def counted(n: int) -> bytes:
        reads.append(n)
        return real(n)

    monkeypatch.setattr(models_base.os, "urandom", counted)
    models_base._forget_random()
    ids = [new_id() for _ in range(models_base._IDS_PER_READ + 1)]
    assert len(set(ids)) == len(ids)
    assert reads == [16 * models_base._IDS_PER_READ] * 2  # one read per batch, not per id
