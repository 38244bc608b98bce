"""The IOOS compliance-checker's cf:1.8 suite as a test helper (issue 18)."""

from __future__ import annotations

import json
from pathlib import Path


def cf_failures(path, tmp_path) -> list[str]:
    """The high-priority (error) failures of the compliance-checker cf:1.8 suite on ``path``."""
    from compliance_checker import runner  # a dev dependency: missing, the test fails rather than skips

    runner.CheckSuite.load_all_available_checkers()
    report = tmp_path / f"{Path(path).stem}.cf.json"
    runner.ComplianceChecker.run_checker(str(path), ["cf:1.8"], 0, "normal", output_filename=str(report),
                                         output_format="json")
    res = json.loads(report.read_text())["cf:1.8"]
    assert res["possible_points"] > 0  # the suite ran
    return [f"{r['name']}: {r['msgs']}" for r in res["high_priorities"] if r["value"][0] < r["value"][1]]
