"""The gateway engine: the active gateway of a cluster publishes where its cable
ends, keeps a cable to every other cluster's gateway, and checks each one.

Every gateway node runs an engine; they elect one leader per cluster (the Lease
`kube.names.GATEWAY_LEASE` in the cluster namespace), which is the *active* gateway:

* it publishes the cluster's `Endpoint` to the Broker, into the cluster's own
  member namespace there (`names.broker_member_namespace`, made by `gnctl
  join`; its Broker identity may write nowhere else), withdrawing those of
  the cluster's earlier active gateways (cable end `private_ip`,
  `subnets` - the global CIDR under Globalnet - `healthCheckIP`, the node's
  health-check global IP once Globalnet has given it one, and `gatewayTerm`,
  the Lease term it won, by which remote clusters tell the active gateway's
  Endpoint from a deposed one's); the Broker syncer copies every member's into
  every cluster. The writes go through `EndpointPublisher`'s thread: a Broker
  request that hangs never holds up the loop that moves the cable;
* it converges its cable (`--cable-driver`: `vxlan` or `wireguard`, through the
  `datapath.cable.Cable` protocol) to the other clusters' Endpoints: one tunnel
  end and one route per remote subnet. The driver is the Endpoint's `backend`
  (and its `backend_config` what the remote ends need: WireGuard's public key and
  port); an Endpoint of another driver is not connected, its connection says why;
* every `health_period` it pings each remote gateway through the cable (its
  health-check IP, else its tunnel address) and writes the results into its
  `Gateway` object's status - `connected` with the RTT, or `error` - which is
  what Lighthouse reads to stop answering with clusters it cannot reach, with
  the driver's own view beside it (`cable`: WireGuard's latest handshake and
  byte counters, and who carries the packets: kernel or wireguard-go).

A passive engine says so in its Gateway status and, once another node is known
to lead (or while this node cannot carry the cable), removes this node's cable
(left from when it was active), so that the route agent routes this node's
traffic to the active gateway. Stopping an engine removes nothing: traffic
keeps flowing until the next leader converges by difference.

Failover: the Lease lasts LEASE_DURATION (0.8 s, renewed every 0.1 s; upstream
15 s), so a dead active gateway is replaced within about a second. A gateway
whose cable link has no carrier (`datapath.cable.UnderlayLink`) is not eligible:
it gives the Lease up at once and does not campaign until the link is back (it
may still reach its API server; it must not stay active). Everything else that
must follow the active gateway watches the Lease: the Globalnet agents (the
standby keeps the NAT programmed, translating nothing), the route agents (their
next hop). The Broker syncer runs in the active engine's process only
(`while_active`): a cut-off gateway's stale view of the Broker must not fight
the active one's. Health pings run in a thread of their own (`HealthChecker`),
so a dead remote's timed-out ping never delays converging the cable.

Established connections survive a failover (`--conntrack-sync-dir`,
datapath/ctsync.py): every gateway node's engine runs conntrackd towards the other
gateway nodes (their InternalIPs, from the labelled Node objects), which writes the
active gateway's entries for cross-cluster connections into the standbys' kernels;
a passive node tracks no cross-cluster traffic itself (`Standby`: the connections
pass through it when it hosts their backend, and its own entries would take the
ports of the replicated translations), and drops that table before its cable
converges when it turns active.

    python -m gateway.engine --kubeconfig K --broker-kubeconfig B --cluster-id C \\
        --node-name N --private-ip IP --subnet CIDR [--netns NS] \\
        [--cable-driver vxlan|wireguard] [--state-dir DIR]
"""

from __future__ import annotations

import argparse
import collections
import copy
import logging
import re
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datapath import cable_drivers, netns
from datapath.cable import Cable, CableError, PeerState, RemoteGateway, UnderlayLink
from datapath.ctsync import ConntrackSync, ConntrackSyncError, Standby, SyncLink
from gateway import metrics
from gateway.endpoint_publisher import EndpointPublisher
from kube import controller, daemon, names, resources
from kube import objects as o
from kube.crud import ResourceClient
from kube.informers import InformerSet
from kube.leaderelection import LeaderElectionConfig, LeaderElector

log = logging.getLogger(__name__)

JSON = dict[str, Any]
_RTT = re.compile(r"time=([0-9.]+) ms")
REPORT_PERIOD = 5.0  # seconds between status writes that only refresh RTTs
RTT_WINDOW = 60  # answered health pings kept per remote gateway for the RTT figures


LEASE_DURATION, RENEW_DEADLINE, RETRY_PERIOD = 0.8, 0.5, 0.1

_VOLATILE_CABLE = ("latestHandshake", "handshakeAgeSeconds", "rxBytes", "txBytes")


def _without_rtt(status: JSON) -> JSON:
    """The status without what changes on every health ping: RTTs and the driver's
    counters (written at most every `REPORT_PERIOD`)."""
    conns = []
    for c in status.get("connections") or []:
        c = {k: v for k, v in c.items() if k != "latencyRTT"}
        if "cable" in c:
            c["cable"] = {k: v for k, v in c["cable"].items() if k not in _VOLATILE_CABLE}
        conns.append(c)
    return {**status, "connections": conns}


@dataclass(frozen=True)
class EngineConfig:
    cluster_id: str
    node_name: str
    private_ip: str
    subnets: tuple[str, ...]
    namespace: str = names.CLUSTER_NAMESPACE
    # The shared Broker namespace; the Endpoint goes into this cluster's member
    # namespace derived from it (`member_namespace`).
    broker_namespace: str = names.BROKER_NAMESPACE
    # Failover within about a second of the active gateway's death: followers poll
    # the Lease every retry_period and take it lease_duration after its last renew
    # (upstream: 15 s / 10 s / 2 s). A leader that cannot renew for renew_deadline
    # stops acting first. Costs the API server ~1/retry_period small writes a second
    # per cluster.
    lease_duration: float = LEASE_DURATION
    renew_deadline: float = RENEW_DEADLINE
    retry_period: float = RETRY_PERIOD
    health_period: float = 1.0
    cable_driver: str = cable_drivers.DEFAULT


def member_namespace(cfg: EngineConfig) -> str:
    """Where this cluster's Endpoint lives on the Broker."""
    return names.broker_member_namespace(cfg.cluster_id, cfg.broker_namespace)


def endpoint_name(cfg: EngineConfig) -> str:
    return f"{cfg.cluster_id}-{cfg.node_name}"


def endpoint_spec(cfg: EngineConfig, health_check_ip: str | None,
                  backend_config: dict[str, str] | None = None, term: int = 0) -> JSON:
    """`term` is the gateway Lease's term this gateway won (`gatewayTerm`)."""
    spec: JSON = {"cluster_id": cfg.cluster_id, "gatewayTerm": term,
                  "cable_name": f"{cfg.cable_driver}-{cfg.cluster_id}-{cfg.node_name}",
                  "hostname": cfg.node_name, "subnets": list(cfg.subnets),
                  "private_ip": cfg.private_ip, "public_ip": cfg.private_ip,
                  "nat_enabled": False, "backend": cfg.cable_driver,
                  "backend_config": dict(backend_config or {})}
    if health_check_ip:
        spec["healthCheckIP"] = health_check_ip
    return spec


def endpoint_precedence(ep: JSON) -> tuple[int, str]:
    """Which of two Endpoints of one cluster is its active gateway's: the higher
    gateway Lease term, then the newer. By time alone, a deposed gateway's publish
    that was held up on a cut link and landed after its successor's would win."""
    return (int(o.spec(ep).get("gatewayTerm") or 0),
            str(o.meta(ep).get("creationTimestamp") or ""))


def remote_endpoints(cluster_id: str, endpoints: list[JSON]) -> list[JSON]:
    """One Endpoint per other cluster: its active gateway's (`endpoint_precedence`),
    when a failover left two."""
    chosen: dict[str, JSON] = {}
    for ep in endpoints:
        cid = str(o.spec(ep).get("cluster_id") or "")
        if not cid or cid == cluster_id or not o.spec(ep).get("private_ip"):
            continue
        if cid not in chosen or endpoint_precedence(ep) > endpoint_precedence(chosen[cid]):
            chosen[cid] = ep
    return [chosen[c] for c in sorted(chosen)]


def remote_gateway(ep: JSON) -> RemoteGateway:
    spec = o.spec(ep)
    config = spec.get("backend_config") or {}
    return RemoteGateway(str(spec["private_ip"]), tuple(spec.get("subnets") or ()),
                         tuple(sorted((str(k), str(v)) for k, v in config.items())))


def cable_state(cable: Cable, state: PeerState | None, now: float) -> JSON:
    """The `cable` of one connection in the Gateway status: the driver's own view."""
    out: JSON = {"driver": cable.driver, "implementation": cable.implementation()}
    if state is not None:
        out.update(rxBytes=state.rx_bytes, txBytes=state.tx_bytes)
        if state.latest_handshake:  # both absent before the first one
            out["latestHandshake"] = time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                   time.gmtime(state.latest_handshake))
            out["handshakeAgeSeconds"] = max(0, int(now - state.latest_handshake))
        if state.state:
            out["state"] = state.state  # IPsec: the IKE and child SA states
    return out


def ping(target: str, timeout_s: int = 1, *, netns_name: str | None = None) -> float | None:
    """RTT in ms of one ICMP echo from namespace `netns_name` (None: ours), or None.

    The echo must leave where the cable is, so with `--netns` it is sent from
    that namespace (a child process inherits the calling thread's namespace).
    """
    with netns.entered(netns_name):
        out = subprocess.run(["ping", "-c", "1", "-W", str(timeout_s), "-n", target],
                             capture_output=True, text=True, timeout=timeout_s + 5)
    found = _RTT.search(out.stdout)
    return float(found.group(1)) if out.returncode == 0 and found else None


class HealthChecker:
    """Pings every remote gateway each `period` in a thread of its own, so that a
    dead gateway's timed-out ping never holds up the engine's loop (a failover
    would wait for it); the loop reads the last result, and is woken when one
    flips between answered and not."""

    def __init__(self, netns_name: str | None, period: float,
                 on_flip: Callable[[], None]) -> None:
        self.netns_name, self.period, self.on_flip = netns_name, period, on_flip
        self._targets: tuple[str, ...] = ()
        self._rtt: dict[str, float | None] = {}
        # The answered pings' RTTs per target, for min/average/max/stdDev (upstream's
        # latencyRTT); a bounded window, so a clusterset's history costs nothing.
        self._history: dict[str, collections.deque[float]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._kick = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="health-check", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._kick.set()
        self._thread.join(5)

    def watch(self, targets: list[str]) -> None:
        with self._lock:
            new = tuple(sorted(set(targets)))
            changed, self._targets = new != self._targets, new
            self._rtt = {t: self._rtt[t] for t in new if t in self._rtt}
            self._history = {t: self._history[t] for t in new if t in self._history}
        if changed:
            self._kick.set()  # a new target is pinged at once

    def rtt(self, target: str) -> float | None:
        """The last RTT in ms; None: no answer (or not pinged yet)."""
        with self._lock:
            return self._rtt.get(target)

    def rtt_stats(self, target: str) -> JSON:
        """upstream's latencyRTT of `target`: the last RTT and, over the last
        RTT_WINDOW answers, min, average, max and standard deviation ("1.2ms")."""
        with self._lock:
            last, window = self._rtt.get(target), list(self._history.get(target, ()))
        if last is None or not window:
            return {}
        mean = statistics.fmean(window)
        return {k: f"{v:.3f}ms" for k, v in (
            ("last", last), ("min", min(window)), ("average", mean), ("max", max(window)),
            ("stdDev", statistics.pstdev(window, mean)))}

    def pinged(self, target: str) -> bool:
        with self._lock:
            return target in self._rtt

    def _loop(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                targets = self._targets
            for target in targets:
                try:
                    rtt = ping(target, netns_name=self.netns_name)
                except Exception:  # a missing namespace, a hung ping: no answer
                    log.debug("health ping to %s failed", target, exc_info=True)
                    rtt = None
                with self._lock:
                    if target not in self._targets:
                        continue
                    before = self._rtt.get(target, "unset")
                    self._rtt[target] = rtt
                    if rtt is not None:
                        self._history.setdefault(
                            target, collections.deque(maxlen=RTT_WINDOW)).append(rtt)
                if (before is None) != (rtt is None) or before == "unset":
                    self.on_flip()
            self._kick.wait(self.period)
            self._kick.clear()


class GatewayEngine:
    """Leader election, Endpoint publication, cable and health, for one node."""

    def __init__(self, *, local_api: Any, broker_api: Any, cfg: EngineConfig,
                 cable: Cable, eligible: Callable[[], bool] | None = None,
                 while_active: Callable[[], daemon.Service] | None = None,
                 ctsync: ConntrackSync | None = None) -> None:
        if cable.driver != cfg.cable_driver:
            raise ValueError(f"a {cable.driver} cable for an engine of {cfg.cable_driver}")
        self.cfg, self.cable = cfg, cable
        self._gateways = ResourceClient(local_api, resources.GATEWAYS)
        self.informers = InformerSet(local_api, name=f"engine@{cfg.node_name}")
        self.endpoints = self.informers.get(resources.SUBMARINER_ENDPOINTS,
                                            namespace=cfg.namespace)
        self._wake = threading.Event()
        self.endpoints.add_handler(on_add=lambda _o: self._wake.set(),
                                   on_update=lambda _a, _b: self._wake.set(),
                                   on_delete=lambda _o: self._wake.set())
        self.health = HealthChecker(cable.netns, cfg.health_period, self._wake.set)
        # Conntrack replication to the other gateway nodes (their InternalIPs), on
        # active and passive nodes alike: the standby's kernel holds the state of
        # the connections the active one carries.
        self.ctsync = ctsync
        self.standby = Standby(cable.netns) if ctsync is not None else None
        self._ctsync_problem: str | None = None
        self._ctsync_role: str | None = None  # what the replication last turned into
        self._handover_lock = threading.Lock()
        # The gateway nodes, this one among them: their InternalIPs for conntrack
        # sync, and this node's health-check IP for the Endpoint without a GET a round.
        self.gateway_nodes = self.informers.get(
            resources.NODES,
            label_selector=f"{names.GATEWAY_LABEL}={names.GATEWAY_LABEL_VALUE}")
        if ctsync is not None:
            self.gateway_nodes.add_handler(on_add=lambda _o: self._wake.set(),
                                           on_update=lambda _a, _b: self._wake.set(),
                                           on_delete=lambda _o: self._wake.set())
        self.active = False
        self._cable_removed = False  # by this passive engine, since it last converged it
        self._reported: JSON = {}
        self._reported_at = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # What runs on the active gateway only, one instance per term (the Broker
        # syncer: a cut-off gateway's stale view of the Broker must not fight the
        # active one's over the cluster's copies).
        self._while_active = while_active
        self._term_service: daemon.Service | None = None
        self._term = 0
        self._term_lock = threading.Lock()
        self.elector = LeaderElector(
            local_api,
            LeaderElectionConfig(name=names.GATEWAY_LEASE, namespace=cfg.namespace,
                                 identity=cfg.node_name, lease_duration=cfg.lease_duration,
                                 renew_deadline=cfg.renew_deadline,
                                 retry_period=cfg.retry_period),
            on_started_leading=self._lead, on_stopped_leading=self._follow,
            eligible=eligible or UnderlayLink(cfg.private_ip, cable.netns).up)
        # Broker writes never hold up the loop that moves the cable (endpoint_publisher).
        self.publisher = EndpointPublisher(
            broker_api, cluster_id=cfg.cluster_id, name=endpoint_name(cfg),
            namespace=member_namespace(cfg), local_copies=self.endpoints,
            is_leader=lambda: self.elector.is_leader)

    def _lead(self) -> None:
        log.info("%s is the active gateway of %s", self.cfg.node_name, self.cfg.cluster_id)
        self.active = True
        self.publisher.new_term()
        # At once, not after this node's cable converged: remote clusters switch
        # their cables to it meanwhile.
        self.publisher.want(self.endpoint_spec())
        self._wake.set()
        if self._while_active is not None:
            with self._term_lock:
                self._term += 1
                term = self._term
            threading.Thread(target=self._run_term_service, args=(term,),
                             name="gateway-active-service", daemon=True).start()

    def _follow(self) -> None:
        log.info("%s is passive", self.cfg.node_name)
        self.active = False
        self.publisher.end_term()
        self._wake.set()
        with self._term_lock:
            self._term += 1
            service, self._term_service = self._term_service, None
        if service is not None:
            service.stop()

    def _run_term_service(self, term: int) -> None:
        """Start this term's service, retrying while the term lasts (a Broker that is
        down makes the syncer's first sync fail; the cable does not wait for it)."""
        assert self._while_active is not None
        while not self._stop.is_set():
            with self._term_lock:
                if term != self._term:
                    return
            service = self._while_active()
            try:
                service.start()
            except Exception as exc:
                log.warning("the active gateway's Broker syncer did not start: %s; retrying",
                            exc)
                service.stop()
                self._stop.wait(2.0)
                continue
            with self._term_lock:
                if term == self._term and self.active:
                    self._term_service = service
                    return
            service.stop()  # the term ended while it started
            return

    def start(self) -> GatewayEngine:
        self.informers.start()
        self.informers.wait_for_sync(30)
        self._thread = threading.Thread(target=self._loop, name="gateway-engine", daemon=True)
        self._thread.start()
        self.publisher.start()
        self.health.start()
        self.elector.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self.elector.stop(5)
        self.publisher.stop()
        self.health.stop()
        if self._thread:
            self._thread.join(10)
        if self.ctsync is not None:
            self.ctsync.stop()
        with self._term_lock:
            service, self._term_service = self._term_service, None
        if service is not None:
            service.stop()
        self.informers.stop()

    # -- the loop ------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:
                log.exception("gateway engine step failed; retrying")
            self._wake.wait(self.cfg.health_period)
            self._wake.clear()

    def tick(self) -> None:
        """One round: converge the cable, publish, check the connections, report."""
        self._converge_ctsync()
        if not self.active:
            leader = self.elector.leader_identity
            if not self._cable_removed and self.cable.exists() and (
                    (leader and leader != self.cfg.node_name) or not self.elector.eligible):
                # Its routes would send replies of this node's pods into a tunnel
                # nobody answers; the route agent routes them to the active gateway.
                log.info("%s: removing this node's cable",
                         f"{leader} is the active gateway now" if leader != self.cfg.node_name
                         else "this node cannot carry the cable")
                self.cable.remove()
                # An external daemon's device stays (its routes and peers go): once.
                self._cable_removed = True
            self._report(self._with_ctsync({"haStatus": "passive", "connections": []}))
            return
        # The cable first, from the local cache alone: a Broker or API server that is
        # down for a while must not hold up the tunnels that carry traffic now.
        remotes = remote_endpoints(self.cfg.cluster_id, self.endpoints.list())
        refused = {o.name(ep): why for ep in remotes
                   if (why := self.refusal(ep)) is not None}
        failure = None
        self._cable_removed = False
        try:
            self.cable.converge([remote_gateway(ep) for ep in remotes
                                 if o.name(ep) not in refused])
        except CableError as exc:  # one line in the status; retried next round
            failure = f"{self.cfg.cable_driver} cable: {exc}"
            log.error("%s", failure)
        spec = self.endpoint_spec()
        if not self.elector.is_leader:
            return  # stepped down during this round: publish nothing
        self.publisher.want(spec)
        peers = self.cable.peers() if failure is None else {}
        self.health.watch([self._health_target(ep) for ep in remotes
                           if failure is None and o.name(ep) not in refused])
        status: JSON = {"haStatus": "active", "localEndpoint": spec,
                        "connections": [self._check(ep, refused.get(o.name(ep)), failure,
                                                    peers) for ep in remotes]}
        if failure or self.publisher.problem:
            status["statusFailure"] = "; ".join(
                p for p in (failure, self.publisher.problem) if p)
        self._report(self._with_ctsync(status))

    def endpoint_spec(self) -> JSON:
        """This gateway's Endpoint, in the term it leads (its health-check IP from
        the Node's annotation, once Globalnet has given it one)."""
        node = self.gateway_nodes.get(self.cfg.node_name) or {}
        health_ip = o.annotations_of(node).get(names.GATEWAY_GLOBAL_IP_ANNOTATION)
        return endpoint_spec(self.cfg, health_ip, self.cable.backend_config(),
                             self.elector.term)

    def ctsync_link(self) -> SyncLink | None:
        """This node's conntrack replication: its InternalIP, the other gateway nodes'
        and the subnets of every cluster (ours and the remote Endpoints'); None
        while this node has no InternalIP."""
        nodes = self.gateway_nodes.list()
        me = next((n for n in nodes if o.name(n) == self.cfg.node_name), None)
        local_ip = o.internal_ip(me) if me is not None else None
        if local_ip is None:
            return None
        peers = sorted({ip for n in nodes if o.name(n) != self.cfg.node_name
                        and (ip := o.internal_ip(n)) and ip != local_ip})
        return SyncLink(local_ip, tuple(peers), self.clusterset_subnets())

    def clusterset_subnets(self) -> tuple[str, ...]:
        """Ours and every remote Endpoint's subnets: the cross-cluster addresses."""
        subnets = {*self.cfg.subnets}
        for ep in remote_endpoints(self.cfg.cluster_id, self.endpoints.list()):
            subnets.update(str(s) for s in o.spec(ep).get("subnets") or ())
        return tuple(sorted(subnets))

    def _converge_ctsync(self) -> None:
        """Never holds up the cable: a failure is one line in the status, retried."""
        if self.ctsync is None:
            return
        try:
            assert self.standby is not None
            self.ctsync.converge(self.ctsync_link())
            role = "active" if self.active else "passive"
            if role != self._ctsync_role:
                self._ctsync_role = role
                # Beside the cable, not before it: a commit of thousands of entries
                # takes a few hundred ms, the remote clusters' cables move meanwhile.
                threading.Thread(target=self._hand_over_connections, args=(role,),
                                 name="conntrack-handover", daemon=True).start()
            # Passive: cross-cluster traffic passing through is not tracked here (it
            # would take the ports of the active gateway's translations); active:
            # removed before the cable converges, below.
            self.standby.converge(None if self.active else self.clusterset_subnets())
            problem = None
        except ConntrackSyncError as exc:
            problem = f"conntrack sync: {exc}"
        except Exception as exc:  # netlink, the run directory: retried next round
            problem = f"conntrack sync: {type(exc).__name__}: {exc}"
        if problem != self._ctsync_problem and problem is not None:
            log.warning("%s", problem)
        self._ctsync_problem = problem

    def _hand_over_connections(self, role: str) -> None:
        """Active: the connection state the other gateway nodes sent goes into this
        node's kernel, while its cable comes up; passive: this node's entries of its
        term expire. A conntrackd still starting (the engine's first term) has
        nothing to hand over; a role that changed again meanwhile is not handed."""
        assert self.ctsync is not None
        with self._handover_lock:  # one at a time, in the order the roles changed
            if not self.ctsync.ready() or role != self._ctsync_role:
                return
            try:
                if role == "active":
                    took = self.ctsync.take_over()
                    log.info("replicated connection state committed in %.0f ms",
                             took * 1000)
                else:
                    self.ctsync.stand_by()
            except ConntrackSyncError as exc:
                log.warning("conntrack sync, turning %s: %s", role, exc)

    def _with_ctsync(self, status: JSON) -> JSON:
        """The Gateway status with the conntrack replication's state beside the cable's."""
        if self.ctsync is None:
            return status
        link = self.ctsync.link
        sync: JSON = {"peers": list(link.peers) if link else [],
                      "state": ("error" if self._ctsync_problem else
                                "running" if self.ctsync.ready() else
                                "starting" if self.ctsync.running() else "idle")}
        if self._ctsync_problem:
            sync["statusMessage"] = self._ctsync_problem
        return {**status, "conntrackSync": sync}

    def refusal(self, ep: JSON) -> str | None:
        """Why the cable does not connect to this remote Endpoint, or None."""
        remote = cable_drivers.backend_of(o.spec(ep))
        why = cable_drivers.mismatch(self.cfg.cable_driver, remote)
        return why or self.cable.unusable(remote_gateway(ep))

    def _check(self, ep: JSON, refused: str | None, failure: str | None,
               peers: dict[str, PeerState]) -> JSON:
        spec = o.spec(ep)
        conn: JSON = {"endpoint": spec, "usingIP": spec["private_ip"], "usingNAT": False}
        if refused or failure:
            conn.update(status="error", statusMessage=refused or failure)
            return conn
        target = self._health_target(ep)
        rtt = self.health.rtt(target)
        state = peers.get(str(spec["private_ip"]))
        conn["cable"] = cable_state(self.cable, state, time.time())
        handshake = ""
        if state is not None:
            handshake = ("; no handshake yet" if not state.latest_handshake else
                         f"; handshake {conn['cable']['handshakeAgeSeconds']}s ago")
        if rtt is None and not self.health.pinged(target):
            conn.update(status="connecting", statusMessage=f"checking {target}{handshake}")
        elif rtt is None:
            conn.update(status="error", statusMessage=f"no answer from {target}{handshake}")
        else:
            conn.update(status="connected", statusMessage=f"{target} answers",
                        latencyRTT=self.health.rtt_stats(target) or {"last": f"{rtt}ms"})
        return conn

    def _health_target(self, ep: JSON) -> str:
        """What the health check pings: the remote's health-check IP, else its
        cable's tunnel address."""
        spec = o.spec(ep)
        return str(spec.get("healthCheckIP") or self.cable.tunnel_ip(str(spec["private_ip"])))

    def _report(self, status: JSON) -> None:
        """Write the Gateway status when it changed; a change of RTTs alone waits
        for `REPORT_PERIOD`, so a healthy clusterset costs etcd one write per
        gateway every few seconds, not every health ping."""
        metrics.GATEWAY.observe(cluster=self.cfg.cluster_id, hostname=self.cfg.node_name,
                                driver=self.cfg.cable_driver, endpoint_ip=self.cfg.private_ip,
                                status=status)
        now = time.monotonic()
        if (_without_rtt(status) == _without_rtt(self._reported)
                and now - self._reported_at < REPORT_PERIOD):
            return
        self._write_status(status)
        self._reported, self._reported_at = status, now

    def _write_status(self, status: JSON) -> None:
        name, ns = self.cfg.node_name, self.cfg.namespace
        current = self._gateways.get_or_none(name, namespace=ns)
        if current is None:
            current = self._gateways.create_if_absent({
                "apiVersion": resources.GATEWAYS.api_version, "kind": resources.GATEWAYS.kind,
                "metadata": {"name": name, "namespace": ns}}, namespace=ns
            ) or self._gateways.get(name, namespace=ns)

        def replace_status(gateway: JSON) -> bool:
            if (gateway.get("status") or {}) == status:
                return False
            gateway["status"] = copy.deepcopy(status)
            return True

        controller.write_status(self._gateways, current, replace_status)


def cable_ip(api: Any, node_name: str) -> str | None:
    """The node's ``names.CABLE_IP_ANNOTATION``, if it has one (a transient API error
    counts as none: the flag's address is used and the engine goes on)."""
    try:
        node = ResourceClient(api, resources.NODES).get_or_none(node_name)
    except Exception as exc:  # logged; the flag's address stands
        log.warning("cannot read node %s for its cable IP: %s", node_name, exc)
        return None
    if node is None:
        return None
    return (o.annotations_of(node).get(names.CABLE_IP_ANNOTATION) or "").strip() or None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gateway.engine",
                                description="The gateway engine of one gateway node.")
    p.add_argument("--kubeconfig", type=Path, required=True)
    p.add_argument("--broker-kubeconfig", type=Path, required=True)
    p.add_argument("--cluster-id", required=True)
    p.add_argument("--node-name", required=True)
    p.add_argument("--private-ip", required=True,
                   help="this node's address the cable uses, unless the node's "
                        f"{names.CABLE_IP_ANNOTATION} annotation names another")
    p.add_argument("--subnet", action="append", required=True,
                   help="a CIDR other clusters reach through this gateway (the global CIDR)")
    p.add_argument("--netns", help="program this named network namespace instead of our own")
    p.add_argument("--cable-driver", choices=cable_drivers.names(),
                   default=cable_drivers.DEFAULT,
                   help="the tunnel to the other gateways, recorded in the Endpoint's "
                        "backend; only gateways of the same driver connect (default "
                        f"{cable_drivers.DEFAULT})")
    p.add_argument("--state-dir", type=Path, default=cable_drivers.DEFAULT_STATE_DIR,
                   help="what the cable keeps across restarts: the WireGuard key pair "
                        f"(default {cable_drivers.DEFAULT_STATE_DIR})")
    p.add_argument("--cable-implementation", choices=("auto", "kernel", "userspace"),
                   default="auto",
                   help="WireGuard: kernel, userspace (wireguard-go), or auto: the kernel's "
                        "when `ip link add type wireguard` works (default auto)")
    p.add_argument("--cable-run-dir", type=Path,
                   help="a directory standing for /run of wireguard-go and wg in a private "
                        "mount namespace (several gateways sharing one; needs "
                        "CAP_SYS_ADMIN). Default: the system's /run/wireguard")
    p.add_argument("--psk-file", type=Path,
                   help="ipsec: the file holding the clusterset's pre-shared key (the "
                        f"{names.IPSEC_PSK_SECRET} Secret)")
    p.add_argument("--cable-daemon", choices=cable_drivers.DAEMON_MODES, default="managed",
                   help="who runs the cable's userspace daemon (wireguard-go, charon): "
                        "managed, this engine; external, a process beside it (the gateway "
                        "pod's cable container), which outlives the engine's restarts; the "
                        "engine only configures it (default managed)")
    p.add_argument("--conntrack-sync-dir", type=Path,
                   help="replicate the state of cross-cluster connections to the other "
                        "gateway nodes with conntrackd (its config, lock and socket in this "
                        "directory), so that established connections survive a failover. "
                        "Default: off")
    p.add_argument("--syncer-kubeconfig", type=Path,
                   help="also run the Broker syncer (gateway.syncer) in this process, as the "
                        "identity of this kubeconfig: one interpreter less per gateway node")
    p.add_argument("--lease-duration", type=float, default=LEASE_DURATION,
                   help="seconds after the active gateway's last renew of the gateway Lease "
                        f"that another takes over (default {LEASE_DURATION})")
    p.add_argument("--renew-deadline", type=float, default=RENEW_DEADLINE,
                   help="seconds an active gateway that cannot renew keeps acting "
                        f"(default {RENEW_DEADLINE})")
    p.add_argument("--retry-period", type=float, default=RETRY_PERIOD,
                   help=f"seconds between Lease renewals and polls (default {RETRY_PERIOD})")
    p.add_argument("--metrics-port", type=int, default=0,
                   help="serve Prometheus metrics (gateway.metrics; the Broker syncer's "
                        "too) on this port (0: off)")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    daemon.setup_logging(args.verbose)
    problem = netns.missing(args.netns)
    for path in (args.kubeconfig, args.broker_kubeconfig,
                 *([args.syncer_kubeconfig] if args.syncer_kubeconfig else [])):
        if not path.exists():
            problem = problem or f"kubeconfig {path} not found"
    if problem:
        print(f"gateway-engine: {problem}", file=sys.stderr)
        return 2
    from kube.client import new_api_client

    local_api = new_api_client(args.kubeconfig)
    private_ip = cable_ip(local_api, args.node_name) or args.private_ip
    cfg = EngineConfig(cluster_id=args.cluster_id, node_name=args.node_name,
                       private_ip=private_ip, subnets=tuple(args.subnet),
                       lease_duration=args.lease_duration, renew_deadline=args.renew_deadline,
                       retry_period=args.retry_period, cable_driver=args.cable_driver)
    psk = None
    if args.psk_file is not None:
        try:
            psk = args.psk_file.read_text().strip() or None
        except OSError as exc:
            print(f"gateway-engine: cannot read the IPsec pre-shared key: {exc}",
                  file=sys.stderr)
            return 2
    try:
        cable = cable_drivers.new_cable(args.cable_driver, cable_drivers.CableOptions(
            private_ip, netns=args.netns, state_dir=args.state_dir,
            run_root=args.cable_run_dir, implementation=args.cable_implementation,
            daemon=args.cable_daemon, psk=psk, subnets=tuple(args.subnet)))
    except (CableError, OSError) as exc:
        print(f"gateway-engine: {exc}", file=sys.stderr)
        return 2
    log.info("cable driver %s", args.cable_driver)
    broker_api = new_api_client(args.broker_kubeconfig)
    started = f"gateway engine of {cfg.cluster_id} on {cfg.node_name} started"
    while_active = None
    if args.syncer_kubeconfig is not None:
        from gateway.syncer import ClusterSyncer

        syncer_api = new_api_client(args.syncer_kubeconfig)

        def while_active() -> daemon.Service:
            return ClusterSyncer(local_api=syncer_api, broker_api=broker_api)

        started += ", with the Broker syncer while active"
    ctsync = None
    if args.conntrack_sync_dir is not None:
        ctsync = ConntrackSync(args.conntrack_sync_dir, netns=args.netns)
        started += ", replicating conntrack state to the other gateway nodes"
    engine = GatewayEngine(local_api=local_api, broker_api=broker_api, cfg=cfg, cable=cable,
                           while_active=while_active, ctsync=ctsync)
    if args.metrics_port:
        metrics.register_engine()
    metrics.serve(args.metrics_port, what="gateway engine")
    return daemon.serve(engine, started)

if __name__ == "__main__":
    sys.exit(main())
