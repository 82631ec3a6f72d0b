"""What the agent's controllers add to ``kube.controller``: idempotent writes of the
objects they publish and import.

The controllers themselves build on ``kube.controller.Controller`` (informer
handlers turn events into keys, ``reconcile(key)`` brings one key to its desired
state). What differs from Globalnet's: the agent talks to two API servers (the
cluster and the Broker), so informers are grouped per server and may be namespace-
and label-scoped; and it owns no IP pool, so there is no leadership term to restart.

Writes are create-or-update against the informer's copy: an object is written only
when its canonical content differs, an update carries the cached resourceVersion
(a stale one fails with 409, is re-read and tried again), and a create that loses a
race to an existing object turns into an update of it. Status goes through
``kube.controller.write_status``.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterable

from kube import conditions, controller, errors, names
from kube import objects as o
from kube.crud import ResourceClient
from lighthouse.agent.model import JSON
from lighthouse.agent.publication import ConditionState

log = logging.getLogger(__name__)

# A key that keeps failing is dropped sooner than Globalnet's: the next event or
# resync brings it back, and nothing here holds addresses.
MAX_REQUEUES = 15


# --- idempotent writes ---------------------------------------------------------------------

Content = Callable[[JSON], object]


def create_or_update(client: ResourceClient, desired: JSON, existing: JSON | None, *,
                     content: Content, fields: tuple[str, ...],
                     owned: Callable[[JSON], bool] = lambda obj: True) -> JSON | None:
    """Make the object ``desired``; return what was written, None if nothing had to be.

    ``existing`` is the cached copy (None: not in the cache). ``content`` gives the
    canonical form compared; ``fields`` are the top-level fields copied from
    ``desired`` on update (labels and our annotations always; exported annotations an
    older version of the object listed and ``desired`` lacks are removed). A create that finds
    the object, or an update that meets 409 because the cache lags behind our own
    last write, re-reads it and goes on from the fresh copy. An object found under
    the same name that ``owned`` rejects (someone else's) is left alone.
    """
    meta = desired["metadata"]
    if existing is None:
        created = client.create_if_absent(desired)
        if created is not None:
            return created
        existing = client.get(meta["name"], namespace=meta.get("namespace"))
    for _ in range(controller.WRITE_ATTEMPTS):
        if not owned(existing):
            log.warning("%s %s/%s exists and is not ours: left alone", desired.get("kind"),
                        meta.get("namespace"), meta["name"])
            return None
        if content(existing) == content(desired):
            return None
        try:
            return client.update(_merged(existing, desired, fields))
        except Exception as exc:
            if not errors.is_conflict(exc):
                raise
        fresh = client.get_or_none(meta["name"], namespace=meta.get("namespace"))
        if fresh is None:
            return create_or_update(client, desired, None, content=content, fields=fields,
                                    owned=owned)
        existing = fresh
    raise RuntimeError(f"{desired.get('kind')} {meta.get('namespace')}/{meta['name']} kept "
                       "changing under us")


def _merged(existing: JSON, desired: JSON, fields: tuple[str, ...]) -> JSON:
    """``existing`` with ``desired``'s labels, our annotations and ``fields``."""
    body = copy.deepcopy(existing)
    meta = body.setdefault("metadata", {})
    meta["labels"] = dict(o.labels(desired))
    wanted_annotations = o.annotations_of(desired)
    if wanted_annotations:
        kept = o.annotations_of(existing)
        if names.EXPORTED_ANNOTATIONS_ANNOTATION in wanted_annotations:
            # Annotations an earlier export put here go unless still wanted; others' stay.
            listed = kept.get(names.EXPORTED_ANNOTATIONS_ANNOTATION, "").split(",")
            kept = {k: v for k, v in kept.items() if k not in listed}
        # Ours (a VIP, a traffic distribution) go when no longer wanted.
        kept = {k: v for k, v in kept.items() if k not in names.RESERVED_IMPORT_ANNOTATIONS}
        meta["annotations"] = {**kept, **wanted_annotations}
    for field in fields:
        if field in desired:
            body[field] = copy.deepcopy(desired[field])
        else:
            body.pop(field, None)
    return body


def write_conditions(client: ResourceClient, obj: JSON,
                     wanted: Iterable[tuple[str, ConditionState | None]]) -> bool:
    """Set conditions on ``obj``'s status (None entries are left alone); write if changed."""
    states = [(ctype, state) for ctype, state in wanted if state is not None]

    def mutate(updated: JSON) -> bool:
        conds = updated.setdefault("status", {}).setdefault("conditions", [])
        changed = False
        for ctype, state in states:
            changed |= conditions.set_condition(conds, type=ctype, status=state.status,
                                                reason=state.reason, message=state.message)
        return changed

    return controller.write_status(client, obj, mutate)
