"""A Globalnet agent as the real process (`python -m globalnet.agent`), for the
tests that restart it under traffic: started with short lease timings and a
metrics port of its own per process, stopped by PID, its log kept per start."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from lab.ports import free_port


class AgentProcess:
    """One agent process at a time programming namespace `netns`."""

    def __init__(self, *, kubeconfig: Path, netns: str, log_dir: Path, cluster_id: str,
                 global_cidr: str, local_cidrs: Sequence[str], lease_namespace: str,
                 datapath_args: Sequence[str] = ()) -> None:
        self.kubeconfig, self.netns, self.log_dir = kubeconfig, netns, log_dir
        self.cluster_id, self.global_cidr = cluster_id, global_cidr
        self.local_cidrs, self.lease_namespace = tuple(local_cidrs), lease_namespace
        self.datapath_args = tuple(datapath_args)
        self.proc: subprocess.Popen[bytes] | None = None
        self.count = 0
        self.metrics_port = 0

    def argv(self, *extra: str) -> list[str]:
        return [sys.executable, "-m", "globalnet.agent", *self.datapath_args,
                "--netns", self.netns, *extra]

    def start(self) -> None:
        self.count += 1
        # A port per process: what it reports cannot come from an earlier agent.
        self.metrics_port = free_port()
        log = open(self.log_dir / f"agent-{self.count}.log", "wb")  # noqa: SIM115
        local = [arg for cidr in self.local_cidrs for arg in ("--local-cidr", cidr)]
        self.proc = subprocess.Popen(
            self.argv("--kubeconfig", str(self.kubeconfig), "--cluster-id", self.cluster_id,
                      "--global-cidr", self.global_cidr, *local,
                      "--namespace", self.lease_namespace,
                      "--identity", f"agent-{self.count}", "--lease-duration", "2",
                      "--renew-deadline", "1.5", "--retry-period", "0.25",
                      "--metrics-port", str(self.metrics_port)),
            stdout=log, stderr=subprocess.STDOUT)

    def applied_intents(self) -> float:
        """Intents the running agent process has applied to the kernel (its
        `globalnet_intent_applies_total{result="ok"}`); 0 before it serves metrics."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                text = response.read().decode()
        except OSError:
            return 0.0
        return sum(sample.value for family in text_string_to_metric_families(text)
                   for sample in family.samples
                   if sample.name == "globalnet_intent_applies_total"
                   and sample.labels.get("result") == "ok")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None:
            return
        os.kill(self.proc.pid, sig)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def log(self) -> str:
        return (self.log_dir / f"agent-{self.count}.log").read_text(errors="replace")
