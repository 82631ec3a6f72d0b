"""datapath.routes in a real namespace: our routes (proto 149) converge by
difference and nobody else's are touched. Addresses: link 10.9.0.1/24, next
hops 10.9.0.2/.3, destinations 242.x.0.0/16."""

from __future__ import annotations

from collections.abc import Callable

from datapath.routes import RTPROT_CABLE, Route, RouteEvents, RouteTable, cable_routes
from lab import netns

RTPROT_STATIC = 4  # `proto static` in iproute2's rt_protos


def routes(ns: str) -> list[str]:
    return [line.strip() for line in netns.run(ns, ["ip", "route", "show"]).splitlines()]


def veth_netns(make_netns: Callable[[str], str], name: str) -> str:
    ns = make_netns(name)
    netns.run(ns, ["ip", "link", "add", "d0", "type", "veth", "peer", "name", "d1"])
    netns.run(ns, ["ip", "addr", "add", "10.9.0.1/24", "dev", "d0"])
    netns.run(ns, ["ip", "link", "set", "d1", "up"])
    netns.run(ns, ["ip", "link", "set", "d0", "up"])
    return ns


def test_routes_converge_by_difference_and_leave_others_alone(
        make_netns: Callable[[str], str]) -> None:
    ns = veth_netns(make_netns, "rt")
    netns.run(ns, ["ip", "route", "add", "242.9.0.0/16", "via", "10.9.0.3", "proto", "static"])
    table = RouteTable(ns)

    first = table.converge({Route("242.1.0.0/16", "10.9.0.2"), Route("242.2.0.0/16", "10.9.0.2"),
                            Route("242.9.0.0/16", "10.9.0.2")})
    assert sorted(r.dst for r in first.added) == ["242.1.0.0/16", "242.2.0.0/16"]
    assert first.conflicts == ["242.9.0.0/16"]  # someone else's route: reported, kept
    assert "242.9.0.0/16 via 10.9.0.3 dev d0 proto static" in routes(ns)
    assert table.installed() == {Route("242.1.0.0/16", "10.9.0.2"),
                                 Route("242.2.0.0/16", "10.9.0.2")}
    assert netns.run(ns, ["ip", "route", "show", "proto", "149"]).count("via 10.9.0.2") == 2

    # Same wish again: nothing to do. A new next hop and one CIDR fewer: two changes.
    assert table.converge({Route("242.1.0.0/16", "10.9.0.2"),
                           Route("242.2.0.0/16", "10.9.0.2")}).changes == 0
    moved = table.converge({Route("242.1.0.0/16", "10.9.0.3")})
    assert moved.changes == 3 and table.installed() == {Route("242.1.0.0/16", "10.9.0.3")}

    # A route of ours deleted by hand comes back on the next converge.
    netns.run(ns, ["ip", "route", "del", "242.1.0.0/16"])
    assert table.converge({Route("242.1.0.0/16", "10.9.0.3")}).added
    assert table.clear() == 1
    assert table.installed() == set()
    assert "242.9.0.0/16 via 10.9.0.3 dev d0 proto static" in routes(ns)


def test_route_events_report_changes_of_our_routes_only(
        make_netns: Callable[[str], str]) -> None:
    ns = veth_netns(make_netns, "rtev")
    events = RouteEvents(ns)
    # A listener for proto static routes: it proves the kernel announced the foreign
    # route, so `events` had that announcement to read (and ignore).
    static = RouteEvents(ns, proto=RTPROT_STATIC)
    try:
        assert not events.changed(0.1)
        netns.run(ns, ["ip", "route", "add", "242.9.0.0/16", "via", "10.9.0.3", "proto", "static"])
        assert static.changed(5.0)
        assert not events.changed(0.3)  # not ours
        RouteTable(ns).converge({Route("242.1.0.0/16", "10.9.0.2")})
        assert events.changed(1.0)
        netns.run(ns, ["ip", "route", "del", "242.1.0.0/16"])  # by hand
        assert events.changed(1.0)
    finally:
        static.close()
        events.close()


def test_the_cable_takes_over_the_route_agents_routes_and_not_the_other_way_round(
        make_netns: Callable[[str], str]) -> None:
    """A gateway node becoming active: its cable's route replaces the route agent's
    for the same destination at once. Deposed: the route agent's waits (a conflict)
    until the cable's is gone."""
    ns = veth_netns(make_netns, "rtho")
    agent, cable = RouteTable(ns), cable_routes(ns)
    agent.converge({Route("242.1.0.0/16", "10.9.0.2")})
    took = cable.converge({Route("242.1.0.0/16", "10.9.0.3")})
    assert took.added == [Route("242.1.0.0/16", "10.9.0.3")] and not took.conflicts
    assert agent.installed() == set()
    assert cable.installed() == {Route("242.1.0.0/16", "10.9.0.3")}
    assert netns.run(ns, ["ip", "route", "show", "242.1.0.0/16"]).count("via") == 1

    waits = agent.converge({Route("242.1.0.0/16", "10.9.0.2")})
    assert waits.conflicts == ["242.1.0.0/16"] and not waits.added
    assert cable.installed() == {Route("242.1.0.0/16", "10.9.0.3")}
    assert RouteTable(ns, proto=RTPROT_CABLE).clear() == 1
    assert agent.converge({Route("242.1.0.0/16", "10.9.0.2")}).added


def test_route_events_report_any_route_to_a_wanted_destination(
        make_netns: Callable[[str], str]) -> None:
    """Someone else's route to a destination the owner wants is news (it may be
    the one in its way going); to any other destination it is not."""
    ns = veth_netns(make_netns, "rtdst")
    events = RouteEvents(ns, destinations=lambda: frozenset({"242.1.0.0/16"}))
    static = RouteEvents(ns, proto=RTPROT_STATIC)
    try:
        netns.run(ns, ["ip", "route", "add", "242.9.0.0/16", "via", "10.9.0.3", "proto", "static"])
        assert static.changed(5.0)
        assert not events.changed(0.3)
        netns.run(ns, ["ip", "route", "add", "242.1.0.0/16", "via", "10.9.0.3", "proto", "static"])
        assert events.changed(1.0)
        netns.run(ns, ["ip", "route", "del", "242.1.0.0/16"])
        assert events.changed(1.0)
    finally:
        static.close()
        events.close()
