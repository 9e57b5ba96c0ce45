"""Writes a set's ControllerRevisions (`protos.revisions.plan`) through the API.

Shared by the DaemonSet and StatefulSet controllers: creations (one that
exists already is left alone), renumberings, then deletions of revisions
beyond the history limit (one already gone is fine). A failed write raises,
so the work queue retries on fresh state.
"""

from __future__ import annotations

import structlog

from controlplane.apiserver.errors import AlreadyExistsError, NotFoundError
from controlplane.apiserver.handlers import ObjectApi
from controlplane.informer import object_key
from protos.revisions import RevisionActions, SetObject

log = structlog.get_logger(__name__)


async def write_history(api: ObjectApi, owner: SetObject, actions: RevisionActions) -> None:
    for rev in actions.create:
        try:
            await api.create(rev)
        except AlreadyExistsError:
            continue
        log.info(
            "controller_revision_created", owner=object_key(owner), revision=rev.metadata.name, number=rev.revision
        )
    for rev in actions.update:
        await api.write(rev)
        log.info(
            "controller_revision_renumbered", owner=object_key(owner), revision=rev.metadata.name, number=rev.revision
        )
    for rev in actions.delete:
        try:
            await api.delete("ControllerRevision", rev.metadata.namespace, rev.metadata.name, uid=rev.metadata.uid)
        except NotFoundError:
            continue
        log.info("controller_revision_deleted", owner=object_key(owner), revision=rev.metadata.name)
