"""The Broker's identities: who may do what on the Broker's API server.

Two kinds of identity, both ServiceAccounts in the shared Broker namespace
(``names.BROKER_NAMESPACE``), both with non-expiring token Secrets (filled by the
Broker's token controller):

* the **join** identity (``names.BROKER_JOIN_ACCOUNT``), made by `gnctl deploy-broker`;
  its token is what the broker-info file carries. It allocates global CIDRs (the
  Globalnet ConfigMap), writes Cluster objects, and creates, binds and deletes the
  member identities and namespaces below. It can grant nothing but the two member
  roles (``bind`` is limited to them by name) and reads no Secret outside the Broker
  namespace.
* one **member** identity per cluster (``names.broker_member_account``), made by
  `gnctl join`, handed to the cluster's agents, deleted by `gnctl leave`: with it a
  cluster writes only into its own member namespace
  (``names.broker_member_namespace``) and reads every member's namespace and the
  Cluster objects. Deleting the ServiceAccount revokes its token at once: a departed
  cluster whose agents still run can neither write nor read any more.

The member roles are built from ``deploy.rbac``'s Broker rules, so they are exactly
what the agents do there. The read role is bound in each member namespace to every
ServiceAccount of the Broker namespace (the group
``system:serviceaccounts:<namespace>``), so a new member is readable by all without
touching the others' bindings.
"""

from __future__ import annotations

import time
from typing import Any, Final

from deploy import rbac
from deploy.manifests import KINDS, PART_OF, PART_OF_LABEL
from kube import names, resources
from kube.crud import ResourceClient

JSON = dict[str, Any]

JOIN_ROLE: Final = "globalnet-broker-join"
# Bound in a member's namespace to that member's identity: what it publishes.
MEMBER_OWN_ROLE: Final = "globalnet-broker-member-own"
# Bound in every member's namespace to all members: what they import.
MEMBER_READ_ROLE: Final = "globalnet-broker-member-read"
# A Role in the shared namespace, bound to all members: the Cluster objects.
MEMBER_SHARED_ROLE: Final = "globalnet-broker-member-shared"
FIELD_MANAGER: Final = "gnctl"
TOKEN_TIMEOUT: Final = 30.0

_RBAC = "rbac.authorization.k8s.io"
_LABELS: Final = {PART_OF_LABEL: PART_OF}


class BrokerIdentityError(RuntimeError):
    """The Broker did not produce an identity's token; the message is one line."""


def token_secret_name(account: str) -> str:
    return f"{account}-token"


def _rule(group: str, resource: str, verbs: list[str],
          resource_names: list[str] | None = None) -> JSON:
    rule: JSON = {"apiGroups": [group], "resources": [resource], "verbs": verbs}
    if resource_names:
        rule["resourceNames"] = resource_names
    return rule


def _meta(name: str, namespace: str | None = None) -> JSON:
    meta: JSON = {"name": name, "labels": dict(_LABELS)}
    if namespace:
        meta["namespace"] = namespace
    return meta


def _binding(kind: str, name: str, namespace: str | None, role_kind: str, role: str,
             subjects: list[JSON]) -> JSON:
    return {"apiVersion": f"{_RBAC}/v1", "kind": kind, "metadata": _meta(name, namespace),
            "roleRef": {"apiGroup": _RBAC, "kind": role_kind, "name": role},
            "subjects": subjects}


def _account(name: str, namespace: str) -> list[JSON]:
    """A ServiceAccount and its non-expiring token Secret."""
    secret_meta = _meta(token_secret_name(name), namespace)
    secret_meta["annotations"] = {"kubernetes.io/service-account.name": name}
    return [{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(name, namespace)},
            {"apiVersion": "v1", "kind": "Secret", "metadata": secret_meta,
             "type": "kubernetes.io/service-account-token"}]


def _all_members(namespace: str) -> list[JSON]:
    return [{"apiGroup": _RBAC, "kind": "Group", "name": f"system:serviceaccounts:{namespace}"}]


def broker_objects(namespace: str = names.BROKER_NAMESPACE) -> list[JSON]:
    """What `gnctl deploy-broker` applies besides the CRDs and the namespace."""
    join_account = names.BROKER_JOIN_ACCOUNT
    join_subject = [{"kind": "ServiceAccount", "name": join_account, "namespace": namespace}]
    join_namespaced = [
        # gateway.clusterset.join/leave: the global CIDR and ClusterSetIP records
        # (compare and swap).
        _rule("", "configmaps", ["get", "update"],
              [names.GLOBALNET_INFO_CONFIGMAP, names.CLUSTERSET_IP_CONFIGMAP]),
        # gateway.clusterset: the members' Cluster objects.
        _rule(resources.CLUSTERS.group, resources.CLUSTERS.plural,
              ["create", "delete", "get", "list", "update"]),
        # member_objects / revoke_member: member identities and their tokens.
        _rule("", "serviceaccounts", ["create", "delete", "get", "patch"]),
        _rule("", "secrets", ["create", "delete", "get", "patch"]),
    ]
    join_cluster = [
        # The member namespaces (their names depend on the cluster IDs).
        _rule("", "namespaces", ["create", "delete", "get", "patch"]),
        # The member namespaces' bindings, granting the two member roles only.
        _rule(_RBAC, "rolebindings", ["create", "delete", "get", "patch"]),
        _rule(_RBAC, "clusterroles", ["bind"], [MEMBER_OWN_ROLE, MEMBER_READ_ROLE]),
    ]
    return [
        {"apiVersion": f"{_RBAC}/v1", "kind": "ClusterRole", "metadata": _meta(MEMBER_OWN_ROLE),
         "rules": rbac.merged_rules(rbac.Scope.BROKER_OWN)},
        {"apiVersion": f"{_RBAC}/v1", "kind": "ClusterRole", "metadata": _meta(MEMBER_READ_ROLE),
         "rules": rbac.merged_rules(rbac.Scope.BROKER_MEMBERS)},
        {"apiVersion": f"{_RBAC}/v1", "kind": "Role",
         "metadata": _meta(MEMBER_SHARED_ROLE, namespace),
         "rules": rbac.merged_rules(rbac.Scope.BROKER_SHARED)},
        _binding("RoleBinding", MEMBER_SHARED_ROLE, namespace, "Role", MEMBER_SHARED_ROLE,
                 _all_members(namespace)),
        *_account(join_account, namespace),
        {"apiVersion": f"{_RBAC}/v1", "kind": "Role", "metadata": _meta(JOIN_ROLE, namespace),
         "rules": join_namespaced},
        _binding("RoleBinding", JOIN_ROLE, namespace, "Role", JOIN_ROLE, join_subject),
        {"apiVersion": f"{_RBAC}/v1", "kind": "ClusterRole", "metadata": _meta(JOIN_ROLE),
         "rules": join_cluster},
        # Named after the namespace: Brokers in several namespaces keep their own.
        _binding("ClusterRoleBinding", f"{JOIN_ROLE}:{namespace}", None, "ClusterRole",
                 JOIN_ROLE, join_subject),
    ]


def member_objects(cluster_id: str, namespace: str = names.BROKER_NAMESPACE) -> list[JSON]:
    """What `gnctl join` applies on the Broker for one member (with the join identity)."""
    account = names.broker_member_account(cluster_id)
    member_ns = names.broker_member_namespace(cluster_id, namespace)
    subject = [{"kind": "ServiceAccount", "name": account, "namespace": namespace}]
    ns_meta = _meta(member_ns)
    ns_meta["labels"]["globalnet.io/cluster-id"] = cluster_id
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": ns_meta},
        *_account(account, namespace),
        _binding("RoleBinding", MEMBER_OWN_ROLE, member_ns, "ClusterRole", MEMBER_OWN_ROLE,
                 subject),
        _binding("RoleBinding", MEMBER_READ_ROLE, member_ns, "ClusterRole", MEMBER_READ_ROLE,
                 _all_members(namespace)),
    ]


def apply_all(api: Any, objects: list[JSON], *, dry_run: bool = False) -> list[JSON]:
    """Server-side apply ``objects`` in order; the answers."""
    return [ResourceClient(api, KINDS[obj["kind"]]).apply(
        obj, field_manager=FIELD_MANAGER, dry_run=dry_run) for obj in objects]


def account_token(api: Any, account: str, namespace: str = names.BROKER_NAMESPACE, *,
                  timeout: float = TOKEN_TIMEOUT) -> tuple[str, str]:
    """(token, CA PEM) of an identity, once the token controller has filled its Secret.

    A token Secret that is gone is applied again: the token controller deletes one
    whose ServiceAccount its cache does not hold yet (a busy controller-manager),
    and would never issue a token for it."""
    import base64

    secrets = ResourceClient(api, resources.SECRETS)
    deadline = time.monotonic() + timeout
    while True:
        secret = secrets.get_or_none(token_secret_name(account), namespace=namespace)
        if secret is None:
            apply_all(api, [_account(account, namespace)[1]])
        data = (secret or {}).get("data") or {}
        if data.get("token") and data.get("ca.crt"):
            return (base64.b64decode(data["token"]).decode(),
                    base64.b64decode(data["ca.crt"]).decode())
        if time.monotonic() > deadline:
            raise BrokerIdentityError(
                f"the Broker did not issue a token for {namespace}/{account} within "
                f"{timeout:.0f} s (is its kube-controller-manager running the "
                "serviceaccount-token controller?)")
        time.sleep(0.2)


def revoke_member(api: Any, cluster_id: str, namespace: str = names.BROKER_NAMESPACE
                  ) -> bool:
    """Delete a member's identity (its token stops working at once) and its namespace
    (the namespace controller then deletes what it published); True if any existed."""
    account = names.broker_member_account(cluster_id)
    member_ns = names.broker_member_namespace(cluster_id, namespace)
    # The account first: from then on its token authenticates nobody.
    found = ResourceClient(api, resources.SERVICE_ACCOUNTS).delete_if_exists(
        account, namespace=namespace)
    found |= ResourceClient(api, resources.SECRETS).delete_if_exists(
        token_secret_name(account), namespace=namespace)
    bindings = ResourceClient(api, KINDS["RoleBinding"])
    for name in (MEMBER_OWN_ROLE, MEMBER_READ_ROLE):
        found |= bindings.delete_if_exists(name, namespace=member_ns)
    found |= ResourceClient(api, resources.NAMESPACES).delete_if_exists(member_ns)
    return found
