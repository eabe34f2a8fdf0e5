"""Prune of parents: the dangling chain an image was built on (org.mobyproject.image.parent) goes with it."""

from __future__ import annotations

import logging

from imageremoval.server.domain.container_users import ContainerUsers
from imageremoval.server.domain.docker_rules import Resolution
from imageremoval.server.domain.errors import NotFoundInContainerd, OutcomeUnknown, RemovalError
from imageremoval.server.domain.model import LABEL_PARENT, Item, ItemKind
from imageremoval.server.domain.references import is_dangling, is_digest, short_id
from imageremoval.server.removal.call import Call
from imageremoval.server.removal.content_walk import walk_present
from imageremoval.server.removal.record_changes import delete_record

_log = logging.getLogger(__name__)


async def prunable_parents(call: Call, resolution: Resolution, users: ContainerUsers) -> list[Resolution]:
    """The dangling parent chain that can go with the image, decided before any change."""
    policy, force = call.services.policy, call.request.force
    parents: list[Resolution] = []
    child_id, labels = resolution.image_id, resolution.all[0].labels
    seen = {child_id}
    while is_digest(parent_id := labels.get(LABEL_PARENT, "")) and parent_id not in seen:
        seen.add(parent_id)
        related = await call.store.image_and_children(parent_id)
        records = [r for r in related if r.image_id == parent_id]
        siblings = [r for r in related if r.labels.get(LABEL_PARENT) == parent_id and r.image_id != child_id]
        if not records or not all(is_dangling(r.name) for r in records) or siblings:
            break  # gone, still named, or another image builds on it: the walk stops quietly
        if not all(policy.may_delete(r, force=force) for r in records):
            break  # pinned or protected: every path that deletes a record asks the same
        parent = Resolution(image_id=parent_id, found=None, all=tuple(records), named=None, display=short_id(parent_id))
        content = await walk_present(call.store, records[0].target)
        if await users.users(parent_id, {r.name for r in records}, content):
            break  # a container uses it: quietly keep it
        parents.append(parent)
        child_id, labels = parent_id, records[0].labels
    return parents


async def prune(call: Call, parents: list[Resolution]) -> None:
    """Delete the planned parents; any failure stops the walk quietly, as Docker's prune does."""
    request = call.request
    for position, parent in enumerate(parents):
        last = position == len(parents) - 1
        ours = False
        try:
            for index, record in enumerate(parent.all):
                sync = last and not request.async_gc and index == len(parent.all) - 1
                ours = await delete_record(call, record, sync=sync) or ours
        except OutcomeUnknown:
            raise  # not quiet: whether the parent went is unknown, and the answer must say so
        except (RemovalError, NotFoundInContainerd) as exc:
            _log.info("stopped pruning parents at %s: %s", parent.image_id, exc)
            return
        if ours:  # a concurrent prune that removed it first reports it, not this call
            call.progress.items.append(Item(ItemKind.DELETED, parent.image_id, parent.image_id))
        call.services.turns.changed((request.namespace, parent.image_id))
