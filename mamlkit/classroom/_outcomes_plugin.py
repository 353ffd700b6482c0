"""A pytest plugin that records, for every selected test, its markers and its outcome.

The grader copies this file into a temporary folder and loads it with ``-p``, so it works for
any repository being graded, whichever ``mamlkit`` that repository contains. It writes JSON to
the path in the environment variable ``MAMLKIT_OUTCOMES``::

    {"tests": [{"nodeid": ..., "markers": [...], "outcome": ..., "message": ..., "detail": ...}, ...],
     "collection_errors": [{"nodeid": ..., "message": ...}, ...]}

``message`` is the whole message of the failure (an assertion's text, with pytest's
explanation of the values compared); ``detail`` is pytest's short traceback, for the failures
whose message alone does not say where they happened.

``outcome`` is one of ``passed``, ``failed``, ``error`` (in setup or teardown), ``skipped``,
``xfailed`` or ``not run`` (the session stopped before the test ran).
"""

from __future__ import annotations

import json
import os

ENV_VAR = "MAMLKIT_OUTCOMES"

_tests: dict[str, dict] = {}
_collection_errors: list[dict] = []


def _message(report) -> str:
    """What a learner needs first: the whole assertion or exception message of a failure."""
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None:
        return crash.message.strip()
    if isinstance(report.longrepr, tuple):  # a skip: (file, line, reason)
        return str(report.longrepr[-1])
    lines = str(report.longrepr or "").strip().splitlines()
    return lines[-1] if lines else ""


def pytest_collection_finish(session) -> None:
    # session.items holds only the tests that survived "-m" deselection.
    for item in session.items:
        _tests[item.nodeid] = {
            "nodeid": item.nodeid,
            "markers": sorted({mark.name for mark in item.iter_markers()}),
            "outcome": "not run",
            "message": "",
            "detail": "",
        }


def pytest_collectreport(report) -> None:
    if report.failed:
        _collection_errors.append({"nodeid": report.nodeid, "message": _message(report)})


def pytest_runtest_logreport(report) -> None:
    test = _tests.get(report.nodeid)
    if test is None:
        return
    if report.when == "setup":
        test["outcome"] = "passed" if report.passed else ("skipped" if report.skipped else "error")
    elif report.when == "call":
        if hasattr(report, "wasxfail"):
            test["outcome"] = "xfailed" if report.skipped else "passed"
        else:
            test["outcome"] = report.outcome  # passed, failed or skipped
    elif report.failed and test["outcome"] == "passed":
        test["outcome"] = "error"  # the test passed but its teardown failed
    if (report.failed or report.skipped) and not test["message"]:
        test["message"] = _message(report)
        if report.failed:
            lines = report.longreprtext.strip().splitlines()
            test["detail"] = "\n".join(lines[-40:])


def pytest_sessionfinish(session, exitstatus) -> None:
    path = os.environ.get(ENV_VAR)
    if path:
        with open(path, "w", encoding="utf-8") as f:
            json.dump({"tests": list(_tests.values()), "collection_errors": _collection_errors}, f, indent=1)
