"""The HTML report in a real headless browser: it opens from a file with no network, the ranked table,
the plots and the waterfalls are there, and the table's search runs.

Needs Chromium (``make test`` installs it with apt-get where it is missing). Without it the test is
skipped locally, and fails in CI (``CI`` set), where it must run. Set ``CHURNML_TEST_ARTIFACTS`` to a
directory to keep the screenshot.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
import xgboost as xgb

from churnml.config import Config, load_config
from churnml.data.dataset import Dataset
from churnml.data.load import dataset_from_frames
from churnml.data.simulate import simulate
from churnml.features.training_set import build_training_set
from churnml.pipelines import review, score
from churnml.training.model import ChurnModel

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("report_browser")]

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PLOTS = ("plot-shap-summary", "plot-signals", "plot-distribution", "plot-groups", "plot-trend")


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None and Path("/usr/bin/chromium").exists():
        found = "/usr/bin/chromium"
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(
                "Chromium is required in CI for the report test: apt-get install -y chromium (make test)"
            )
        pytest.skip("Chromium is not installed (make test installs it with apt-get install -y chromium)")
    return found


def run_chromium(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [binary, *FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def quick_model(dataset: Dataset, config: Config, path: Path, depth: int, rounds: int) -> Path:
    """A model directory fitted in a second (no tuning, no calibration, no MLflow): what is tested here
    is the page, not the model."""
    training_set = build_training_set(dataset, config.labels, config.features)
    labeled = training_set.labeled
    untrained = ChurnModel.untrained(labeled, training_set.specs)
    x, y = untrained.xy(labeled)
    params = {"objective": "binary:logistic", "max_depth": depth, "eta": 0.1, "nthread": 2, "seed": 0}
    booster = xgb.train(params, xgb.DMatrix(x, label=y, enable_categorical=True), num_boost_round=rounds)
    return untrained.with_booster(booster, best_iteration=rounds - 1).save(path)


@pytest.fixture(scope="session")
def scored(tmp_path_factory: pytest.TempPathFactory) -> score.ScoreResult:
    """Two scoring runs (a month apart, so there is a trend) with a quickly fitted model directory:
    no tuning and no MLflow, the report is what is tested here."""
    out = tmp_path_factory.mktemp("report")
    config = load_config(
        None,
        [
            f"output.dir={out}",
            "scoring.log_to_mlflow=false",
            "scoring.global_sample=400",
            "risk.report.waterfalls=3",
        ],
    )
    sim = simulate(800, 8, 11)
    dataset = sim.to_dataset()
    model_dir = quick_model(dataset, config, out / "model", depth=4, rounds=60)
    score.run(config, as_of=sim.end - pd.DateOffset(months=1), model_uri=str(model_dir), dataset=dataset)
    return score.run(config, model_uri=str(model_dir), dataset=dataset)


class _Elements(HTMLParser):
    """Collects the attributes of every element by tag, and the text of elements with an id."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: dict[str, list[dict[str, str]]] = {}
        self.text: dict[str, str] = {}
        self._open: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {k: v or "" for k, v in attrs}
        self.tags.setdefault(tag, []).append(found)
        if tag not in {"img", "br", "input", "meta"}:
            self._open.append(found.get("id"))

    def handle_endtag(self, tag: str) -> None:
        if self._open and tag not in {"img", "br", "input", "meta"}:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        for name in self._open:
            if name:
                self.text[name] = self.text.get(name, "") + data


def parse(dom: str) -> _Elements:
    parser = _Elements()
    parser.feed(dom)
    return parser


def _table_rows(dom: str) -> list[str]:
    body = dom.split('id="risk-table"', 1)[1].split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    return re.findall(r"<tr[^>]*>", body)


def test_report_renders_in_a_real_browser(scored: score.ScoreResult, tmp_path: Path) -> None:
    binary = chromium()
    report = scored.report_path
    html = report.read_text()
    # Self-contained: nothing to fetch (no external scripts, styles, images or fonts).
    assert not re.search(r"""(src|href)\s*=\s*["'](https?:)?//""", html)
    assert "<link" not in html and "@import" not in html

    dom = run_chromium(binary, tmp_path / "profile", "--dump-dom", report.as_uri()).stdout
    elements = parse(dom)
    images = {img.get("id"): img.get("src", "") for img in elements.tags.get("img", [])}
    for plot in PLOTS:
        assert images.get(plot, "").startswith("data:image/png;base64,"), plot
    waterfalls = [div for div in elements.tags["div"] if "waterfall" in div.get("class", "")]
    assert len(waterfalls) == 3
    rows = _table_rows(dom)
    at_risk = int(scored.risk_list["at_risk"].sum())
    assert len(rows) == min(at_risk, 1000) > 0
    assert elements.text["risk-count"].strip() == str(len(rows))
    assert elements.text["fig-at-risk"].strip() == f"{at_risk:,}"
    first = scored.risk_list.iloc[0]
    assert first["customer_id"] in dom and "retained customers:" in dom

    screenshot = tmp_path / "risk_report.png"
    run_chromium(
        binary, tmp_path / "profile", f"--screenshot={screenshot}", "--window-size=1400,3000", report.as_uri()
    )
    header = screenshot.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", header[16:24]) == (1400, 3000)
    assert screenshot.stat().st_size > 50_000  # not a blank page
    keep = os.environ.get("CHURNML_TEST_ARTIFACTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(screenshot, Path(keep) / "risk_report.png")
        shutil.copy(report, Path(keep) / "risk_report.html")
    print(f"\nscreenshot: {screenshot}")


def test_search_filters_the_table_in_the_browser(scored: score.ScoreResult, tmp_path: Path) -> None:
    """The inline script runs: a #search= link opens the report filtered (here: one risk group's play)."""
    binary = chromium()
    listed = scored.risk_list.loc[scored.risk_list["at_risk"]]
    play = listed["play"].value_counts().index[-1]  # the least common play
    expected = int((listed["play"] == play).sum())
    url = f"{scored.report_path.as_uri()}#search={play.replace(' ', '%20')}"
    dom = run_chromium(binary, tmp_path / "profile", "--dump-dom", url).stdout
    rows = _table_rows(dom)
    visible = [row for row in rows if "display: none" not in row]
    assert len(visible) == expected > 0
    assert len(rows) == len(listed)  # every at-risk row is still in the page, only hidden
    assert parse(dom).text["risk-count"].strip() == str(len(visible))


@pytest.fixture(scope="session")
def reviewed(tmp_path_factory: pytest.TempPathFactory) -> review.ReviewResult:
    """A list scored on the simulator's business with its retention programme, reviewed two months on."""
    out = tmp_path_factory.mktemp("review")
    config = load_config(
        None,
        [
            f"output.dir={out}",
            "scoring.log_to_mlflow=false",
            "scoring.global_sample=200",
            "risk.report.waterfalls=1",
        ],
    )
    sim = simulate(800, 8, 11, programme=True)
    as_of = pd.Timestamp("2025-07-01")
    then = dataset_from_frames(sim.tables, end=as_of)
    model_dir = quick_model(then, config, out / "model", depth=3, rounds=40)
    score.run(config, as_of=as_of, model_uri=str(model_dir), dataset=then)
    return review.run(config, dataset=sim.to_dataset())


def test_review_page_renders_in_a_real_browser(reviewed: review.ReviewResult, tmp_path: Path) -> None:
    binary = chromium()
    [page] = reviewed.pages
    html = page.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["'](https?:)?//""", html)
    dom = run_chromium(binary, tmp_path / "profile", "--dump-dom", page.as_uri()).stdout
    elements = parse(dom)
    images = {img.get("id"): img.get("src", "") for img in elements.tags.get("img", [])}
    for plot in ("plot-effects", "plot-calibration"):
        assert images.get(plot, "").startswith("data:image/png;base64,"), plot
    plays = reviewed.reviews[0].plays
    body = dom.split('id="play-table"', 1)[1].split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    assert len(re.findall(r"<tr[^>]*>", body)) == len(plays) > 1  # each play and "all plays"
    total = plays.iloc[-1]
    assert elements.text["fig-saved"].strip() == f"{total['saved']:,.1f}"
    assert "Did it work?" in dom
    screenshot = tmp_path / "review.png"
    run_chromium(
        binary, tmp_path / "profile", f"--screenshot={screenshot}", "--window-size=1400,2400", page.as_uri()
    )
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and screenshot.stat().st_size > 30_000
    keep = os.environ.get("CHURNML_TEST_ARTIFACTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(screenshot, Path(keep) / "review.png")
