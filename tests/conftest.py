"""Suite-wide hooks: a failure is named the moment it happens, not only in the summary.

A run that CI stops (its time limit) never prints pytest's summary, and its output
is a row of dots: with a failing test named as it fails, and a hung one dumped and
ended by pytest-timeout's thread method (`pyproject.toml`), the log says what went
wrong even when the run does not finish.
"""

from __future__ import annotations

import pytest

_TAIL_LINES = 30
"""Lines of a failure's report printed at once (the summary prints it whole)."""


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if not report.failed:
        return
    reporter = _reporter.get("terminal")
    if reporter is None:
        return
    tail = report.longreprtext.splitlines()[-_TAIL_LINES:]
    reporter.write_line("")
    reporter.write_line(
        f"FAILED {report.nodeid} ({report.when}, {report.duration:.1f} s):", red=True
    )
    for line in tail:
        reporter.write_line(f"    {line}")


_reporter: dict[str, pytest.TerminalReporter] = {}


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    # On xdist's controller (and a run without xdist) only: a worker's terminal
    # output is not shown, its reports reach the controller's hook.
    if hasattr(config, "workerinput"):
        return
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        _reporter["terminal"] = reporter
