"""Fault tooling for soak tests: link proxies, a fault schedule, and a history checker.

`proxy.LinkProxy` delays and cuts one link between components on loopback;
`history.check_history` proves what a run must never do (lose or duplicate an
acknowledged transaction, fork, use a revoked grant); `schedule` runs a local
network under load through a seeded schedule of faults and returns what the
checker needs.
"""
