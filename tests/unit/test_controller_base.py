"""BaseController: keys survive a moment of uncertain leadership."""

from __future__ import annotations

import threading
import time

from globalnet.allocator import OwnedPool
from globalnet.controllers.base import BaseController, ControllerContext
from kube.reconcile import Result


class Recorder(BaseController):
    name = "recorder"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.seen: list[str] = []
        self.done = threading.Event()

    def reconcile(self, key: str) -> Result | bool | None:
        self.seen.append(key)
        self.done.set()
        return None


def test_a_key_processed_while_leadership_is_uncertain_is_retried_not_dropped() -> None:
    leading = threading.Event()
    ctx = ControllerContext(api_client=None, cluster_id="c", pool=OwnedPool("242.0.0.0/24"),
                            informers=None,  # type: ignore[arg-type]
                            is_leading=leading.is_set)
    controller = Recorder(ctx)
    controller.start()
    try:
        controller.enqueue("ns/svc")
        time.sleep(0.2)
        assert controller.seen == []  # nothing written while not sure we lead
        leading.set()  # the late renewal succeeded
        assert controller.done.wait(5), "the key was dropped"
        assert controller.seen == ["ns/svc"]
    finally:
        controller.stop()
