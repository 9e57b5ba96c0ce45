"""Read-your-writes: a controller starts from its own status write until its cache shows it."""

from __future__ import annotations

from controlplane.controllers.written import LatestWrites
from protos.corral.v1 import batch_pb2


def cron_job(revision: int, uid: str = "u1") -> batch_pb2.CronJob:
    c = batch_pb2.CronJob()
    c.metadata.name, c.metadata.uid, c.metadata.resource_version = "backup", uid, str(revision)
    return c


def test_a_later_write_wins_over_a_stale_cache_until_the_cache_catches_up() -> None:
    writes = LatestWrites(batch_pb2.CronJob)
    writes.remember("default/backup", cron_job(7))
    assert writes.latest("default/backup", cron_job(5)).metadata.resource_version == "7"  # type: ignore[union-attr]
    assert writes.latest("default/backup", cron_job(8)).metadata.resource_version == "8"  # type: ignore[union-attr]
    assert writes.latest("default/backup", cron_job(5)).metadata.resource_version == "5"  # type: ignore[union-attr]


def test_a_recreated_object_or_a_gone_one_forgets_the_write() -> None:
    writes = LatestWrites(batch_pb2.CronJob)
    writes.remember("default/backup", cron_job(7))
    assert writes.latest("default/backup", cron_job(3, uid="u2")).metadata.uid == "u2"  # type: ignore[union-attr]
    writes.remember("default/backup", cron_job(9))
    assert writes.latest("default/backup", None) is None
    assert writes.latest("default/backup", cron_job(3)).metadata.resource_version == "3"  # type: ignore[union-attr]
