"""One health-check global IP per gateway node, kept in its annotation.

Remote gateways ping this address to measure reachability and RTT through the
tunnel; the datapath answers it on the gateway.
"""

from __future__ import annotations

from globalnet.controllers import objects as o
from globalnet.controllers import reasons as r
from globalnet.controllers.base import BaseController
from globalnet.ipam import PoolExhausted
from kube import resources
from kube.crud import ResourceClient
from kube.reconcile import Result


class GatewayHealthCheckController(BaseController):
    name = "gateway-health-check-ip"

    def register(self) -> None:
        self.informer = self.ctx.informers.get(resources.NODES)
        self.client = ResourceClient(self.ctx.api_client, resources.NODES)
        self.watch(self.informer)

    @staticmethod
    def owner(name: str) -> str:
        return r.owner_key(r.KIND_GATEWAY, name)

    @staticmethod
    def is_gateway(node: o.JSON) -> bool:
        return o.labels(node).get(r.GATEWAY_LABEL) == "true"

    def reserve(self) -> list[str]:
        conflicts = []
        for node in self.informer.list():
            ip = o.annotations(node).get(r.GATEWAY_GLOBAL_IP_ANNOTATION)
            if ip and self.is_gateway(node):
                reason = self.ctx.pool.reserve_recorded(self.owner(o.name(node)), [ip])
                if reason:
                    conflicts.append(f"{self.owner(o.name(node))}: {reason}")
        return conflicts

    def reconcile(self, key: str) -> Result | bool | None:
        node = self.informer.get(key)
        owner = self.owner(key)
        if node is None or not self.is_gateway(node):
            self.ctx.pool.release(owner)
            if node is not None and r.GATEWAY_GLOBAL_IP_ANNOTATION in o.annotations(node):
                self.client.patch(key, {"metadata": {"annotations": {
                    r.GATEWAY_GLOBAL_IP_ANNOTATION: None}}})
            self.ctx.on_change()
            return None
        try:
            ip = self.ctx.pool.ensure(owner, 1)[0]
        except PoolExhausted:
            return Result(requeue_after=30.0)
        if o.annotations(node).get(r.GATEWAY_GLOBAL_IP_ANNOTATION) != ip:
            self.client.patch(key, {"metadata": {"annotations": {
                r.GATEWAY_GLOBAL_IP_ANNOTATION: ip}}})
        self.ctx.on_change()
        return None
