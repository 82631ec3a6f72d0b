"""One health-check global IP per gateway node, kept in its annotation.

Remote gateways ping this address to measure reachability and RTT through the
tunnel; the datapath answers it on the gateway.
"""

from __future__ import annotations

from globalnet.controllers import reasons as r
from globalnet.controllers.base import BaseController, by_age
from globalnet.controllers.egress import EXHAUSTED_RETRY
from globalnet.ipam import PoolExhausted
from kube import names, resources
from kube import objects as o
from kube.crud import ResourceClient
from kube.reconcile import Result


class GatewayHealthCheckController(BaseController):
    name = "gateway-health-check-ip"

    def register(self) -> None:
        self.informer = self.ctx.informers.get(resources.NODES)
        self.client = ResourceClient(self.ctx.api_client, resources.NODES)
        self.watch(self.informer)
        self.track_pool_failures()

    @staticmethod
    def owner(name: str) -> str:
        return r.owner_key(r.KIND_GATEWAY, name)

    @staticmethod
    def is_gateway(node: o.JSON) -> bool:
        return o.labels(node).get(names.GATEWAY_LABEL) == names.GATEWAY_LABEL_VALUE

    def reserve(self) -> list[str]:
        return self.reserve_recorded(
            (self.owner(o.name(node)), [ip])
            for node in by_age(self.informer.list())
            if self.is_gateway(node)
            and (ip := o.annotations_of(node).get(names.GATEWAY_GLOBAL_IP_ANNOTATION))
        )

    def reconcile(self, key: str) -> Result | bool | None:
        node = self.informer.get(key)
        owner = self.owner(key)
        if node is None or not self.is_gateway(node):
            self.release(owner, key)
            if node is not None and names.GATEWAY_GLOBAL_IP_ANNOTATION in o.annotations_of(node):
                self.client.patch(key, {"metadata": {"annotations": {
                    names.GATEWAY_GLOBAL_IP_ANNOTATION: None}}})
            self.ctx.on_change()
            return None
        try:
            ip = self.ctx.pool.ensure(owner, 1)[0]
        except PoolExhausted:
            self.failed.add(key)
            return Result(requeue_after=EXHAUSTED_RETRY)
        self.failed.discard(key)
        if o.annotations_of(node).get(names.GATEWAY_GLOBAL_IP_ANNOTATION) != ip:
            self.client.patch(key, {"metadata": {"annotations": {
                names.GATEWAY_GLOBAL_IP_ANNOTATION: ip}}})
        self.ctx.on_change()
        return None
