"""The dashboard files are valid Grafana dashboards by Grafana's own models: each is type-checked
by the TypeScript compiler against @grafana/schema (the dashboard, variable, annotation and
per-panel option types Grafana generates from its schema), through tests/grafana/model.ts. Grafana
itself cannot run here, so this is the strictest check available short of loading them in it.
A second test feeds the same check deliberate mistakes, to show it is not vacuous."""

from __future__ import annotations

import copy
import functools
import json
import operator
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
KIT = ROOT / "tests" / "grafana"
TSC = KIT / "node_modules" / "typescript" / "bin" / "tsc"
DASHBOARDS = sorted((ROOT / "dashboards").glob("*.json"))


def tsc(tmp: Path, files: dict[str, dict]) -> dict[str, list[str]]:
    """Type-checks each dashboard as `const d: DashboardFile = <json>`; errors by file stem."""
    node = shutil.which("node")
    if not node or not TSC.exists():
        pytest.skip("needs node and tests/grafana/node_modules (tests/run.sh installs them: npm ci)")
    (tmp / "node_modules").symlink_to(KIT / "node_modules", target_is_directory=True)
    for name in ("model.ts", "tsconfig.json"):
        shutil.copy(KIT / name, tmp / name)
    for stem, doc in files.items():
        (tmp / f"{stem}.ts").write_text("import type { DashboardFile } from './model';\n\n"
                                        "export const dashboard: DashboardFile = "
                                        f"{json.dumps(doc, indent=1)};\n",
                                        encoding="utf-8")
    r = subprocess.run([node, str(TSC), "-p", str(tmp), "--pretty", "false"], capture_output=True,
                       text=True, timeout=300)
    errors: dict[str, list[str]] = {}
    where = "?"
    for line in r.stdout.splitlines():
        m = re.match(r"(\S+?)\.ts\(\d+,\d+\): error", line)
        if m:                                   # else: the previous error's explanation goes on
            where = Path(m.group(1)).name
        errors.setdefault(where, []).append(line)
    assert (r.returncode == 0) == (not errors), r.stdout + r.stderr
    return errors


def test_dashboards_are_valid_by_grafanas_models(tmp_path):
    assert [p.name for p in DASHBOARDS] == ["all-lines.json", "my-line.json", "regional.json"]
    files = {p.stem.replace("-", "_"): json.loads(p.read_text(encoding="utf-8")) for p in DASHBOARDS}
    errors = tsc(tmp_path, files)
    assert not errors, "\n".join(functools.reduce(operator.iadd, errors.values(), []))


def _panel(d: dict, kind: str) -> dict:
    return next(p for p in d["panels"] if p["type"] == kind)


MISTAKES = {
    "misspelt_option": lambda d: _panel(d, "timeseries")["options"]["legend"].update(displayMod="list"),
    "unknown_enum_value": lambda d: _panel(d, "timeseries")["options"]["tooltip"].update(mode="all"),
    "unknown_panel_type": lambda d: _panel(d, "stat").update(type="singlestat2"),
    "option_of_another_panel": lambda d: _panel(d, "timeseries")["options"].update(showHeader=True),
    "custom_on_a_stat": lambda d: _panel(d, "stat")["fieldConfig"]["defaults"].update(custom={"x": 1}),
    "override_without_prefix": lambda d: _panel(d, "state-timeline")["fieldConfig"]["overrides"].append(
        {"matcher": {"id": "byName", "options": "x"}, "properties": [{"id": "fillOpacity", "value": 5}]}),
    "grid_as_text": lambda d: d["panels"][0]["gridPos"].update(w="6"),
    "query_typo": lambda d: d["panels"][0]["targets"][0].update(resultFormt="table"),
    "annotation_typo": lambda d: d["annotations"]["list"][-1]["target"].update(timeEndColum="x"),
    "variable_refresh_as_text": lambda d: d["templating"]["list"][-1].update(refresh="2"),
    "threshold_as_text": lambda d: d["panels"][0]["fieldConfig"]["defaults"]["thresholds"]["steps"][1]
    .update(value="0.95"),
}


REGIONAL_MISTAKES = {
    "variable_refresh_out_of_range": lambda d: d["templating"]["list"][1].update(refresh=7),
    "graph_tooltip_out_of_range": lambda d: d.update(graphTooltip=9),
    "unknown_transformation": lambda d: _panel(d, "barchart")["transformations"][0].update(id="organise"),
    "transformation_option_typo": lambda d: _panel(d, "barchart")["transformations"][0]["options"]
    .update(excludeByNme={"Time": True}),
    "matrix_without_value_field": lambda d: _panel(d, "table")["transformations"][0]["options"]
    .pop("valueField"),
    "matcher_typo": lambda d: _panel(d, "table")["fieldConfig"]["overrides"][0]["matcher"]
    .update(id="byNmae"),
    "table_cell_type_unknown": lambda d: _panel(d, "table")["fieldConfig"]["defaults"]["custom"]
    ["cellOptions"].update(type="colour-background"),
    "barchart_custom_typo": lambda d: _panel(d, "barchart")["fieldConfig"]["defaults"]["custom"]
    .update(fillOpacty=80),
    "bargauge_display_mode_unknown": lambda d: _panel(d, "bargauge")["options"].update(displayMode="bars"),
}


def test_the_check_catches_mistakes(tmp_path):
    base = json.loads((ROOT / "dashboards" / "my-line.json").read_text(encoding="utf-8"))
    regional = json.loads((ROOT / "dashboards" / "regional.json").read_text(encoding="utf-8"))
    files = {"unchanged": base, "unchanged_regional": regional}
    for mistakes, doc in ((MISTAKES, base), (REGIONAL_MISTAKES, regional)):
        for name, change in mistakes.items():
            files[name] = d = copy.deepcopy(doc)
            change(d)
    errors = tsc(tmp_path, files)
    assert "unchanged" not in errors and "unchanged_regional" not in errors, errors
    assert set(errors) == set(MISTAKES) | set(REGIONAL_MISTAKES), \
        (set(MISTAKES) | set(REGIONAL_MISTAKES)) - set(errors)
