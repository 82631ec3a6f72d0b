"""`gnctl verify` and `gnctl benchmark`: a clusterset checked from the outside.

Like subctl's E2E suites, everything here works through the two clusters' API
servers only: it makes a test namespace (the same name in both clusters, as the
MCS API's namespace sameness wants), server pods, Services and ServiceExports,
then *probe pods* pinned to chosen nodes. A probe runs one check with the test
image's python3 and reports through its exit status and its termination message
(`/dev/termination-log`, read back from the pod's status): nothing but the
kubelet's status updates is needed, so it works on any cluster, the lab's too.
Everything made is deleted afterwards, on failure and on Ctrl-C as well.

Modules: `scripts` (the programs pods run), `pods` (their manifests and how a
probe's result is read), `clusters` (what is learnt of a cluster before testing),
`session` (the test namespace's life), `results`, one module per suite
(`connectivity`, `discovery`, `failover`), `runner` (which suites, in order) and
`benchmark`.
"""
