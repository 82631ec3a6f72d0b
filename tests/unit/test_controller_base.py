"""BaseController: keys survive a moment of uncertain leadership."""

from __future__ import annotations

import threading

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
    answers: list[bool] = []
    asked_twice = threading.Event()

    def is_leading() -> bool:
        answer = leading.is_set()
        answers.append(answer)
        if len(answers) >= 2:
            asked_twice.set()
        return answer

    ctx = ControllerContext(api_client=None, cluster_id="c", pool=OwnedPool("242.0.0.0/24"),
                            informers=None,  # type: ignore[arg-type]
                            is_leading=is_leading)
    controller = Recorder(ctx)
    controller.start()
    try:
        controller.enqueue("ns/svc")
        # The key was taken, met "not sure we lead", and was taken again after the
        # retry delay: kept, and not reconciled (nothing written) either time.
        assert asked_twice.wait(5), "the key was not retried while leadership was uncertain"
        assert answers[:2] == [False, False]
        assert controller.seen == []
        leading.set()  # the late renewal succeeded
        assert controller.done.wait(5), "the key was dropped"
        assert controller.seen == ["ns/svc"]
    finally:
        controller.stop()
