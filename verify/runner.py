"""Which suites run, in what order, in one session.

The suites' names are subctl's (`connectivity`, `service-discovery`,
`gateway-failover`); the disruptive one runs only when asked for with
`--disruptive`, and last, since it restarts the target's gateway. A suite that
crashes (an API server gone mid-run) becomes one FAIL row; the others still run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import ModuleType

from verify import connectivity, discovery, failover
from verify.clusters import Cluster, check_pair
from verify.context import Context, prepare
from verify.errors import Interrupted, VerifyError
from verify.results import Outcome, Result
from verify.session import Session

SUITES: dict[str, ModuleType] = {
    connectivity.NAME: connectivity,
    discovery.NAME: discovery,
    failover.NAME: failover,
}
DISRUPTIVE = frozenset({failover.NAME})
DEFAULT_TIMEOUT_S = 30.0


def select(only: Sequence[str] | None, *, disruptive: bool) -> list[str]:
    """The suites to run, in SUITES order; VerifyError for a disruptive suite asked
    for without --disruptive."""
    wanted = set(only or [n for n in SUITES if n not in DISRUPTIVE or disruptive])
    unknown = wanted - set(SUITES)
    if unknown:
        raise VerifyError(f"unknown suite {sorted(unknown)[0]!r} (suites: {', '.join(SUITES)})")
    if not disruptive and wanted & DISRUPTIVE:
        raise VerifyError(f"{sorted(wanted & DISRUPTIVE)[0]} disrupts the clusterset: add "
                          "--disruptive to run it")
    return [n for n in SUITES if n in wanted]


def run(source: Cluster, target: Cluster, suites: Sequence[str], *, image: str,
        timeout: float = DEFAULT_TIMEOUT_S,
        progress: Callable[[str], None] = lambda _m: None) -> list[Result]:
    """Every suite in `suites` from `source` to `target`; one Result per check."""
    check_pair(source, target)
    results: list[Result] = []
    with Session([source, target], image=image, progress=progress) as session:
        ctx = Context(session, source, target, timeout)
        try:
            prepare(ctx, discovery=discovery.NAME in suites)
        except (TimeoutError, Interrupted) as exc:
            if session.stop.is_set():
                raise
            return [Result("setup", "servers, Services and exports", "-", "-",
                           Outcome.FAIL, str(exc))]
        for name in suites:
            progress(f"suite {name}")
            try:
                results += SUITES[name].run(ctx)
            except (KeyboardInterrupt, Interrupted):
                raise
            except Exception as exc:
                results.append(Result(name, "(the suite stopped)", "-", "-", Outcome.FAIL,
                                      f"{type(exc).__name__}: {exc}"))
    return results
