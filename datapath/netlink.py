"""pyroute2's ``IPRoute`` without the rest of pyroute2.

``import pyroute2`` (and so ``from pyroute2.iproute.linux import IPRoute``: a submodule
import runs its package's ``__init__`` first) imports every netlink family pyroute2
supports - NDB, IPDB, conntrack, ipset, IPVS, nl80211, WireGuard, plan9 ...: about 220
modules and 6 MB RSS in the route agent on every node and in the gateway engine, which
use only ``IPRoute``. Here ``pyroute2`` is a deferred package (`deferred_import.defer`,
as ``kube.lean`` does for ``kubernetes``): its ``__init__`` runs only when something
asks it for a name it does not have yet (``pyroute2.NDB``), once and in full, so code
using pyroute2 normally is unaffected. A no-op when pyroute2 was imported first.
"""

from __future__ import annotations

from deferred_import import defer

defer("pyroute2")

from pyroute2.iproute.linux import IPRoute  # noqa: E402
from pyroute2.netlink.rtnl import RTMGRP_IPV4_ROUTE  # noqa: E402

__all__ = ["RTMGRP_IPV4_ROUTE", "IPRoute"]
