"""`churnml bento` builds a Bento that serves the registered champion on its own (no MLflow store, no
checkout): built into a temporary BentoML home, then served from BentoML's store by tag."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pytest
import yaml

if TYPE_CHECKING:
    from servers import Trained

from servers import bento_example_answer, build_bento

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("serving")]
BIN = Path(sys.executable).parent


def test_bento_packs_and_serves_the_champion(trained: Trained, tmp_path: Path) -> None:
    env, built = build_bento(tmp_path, trained.overrides)
    version = trained.version.rsplit("/", 1)[1]
    assert f"churn-model:v{version} packed" in built.stdout

    (bento_yaml,) = (tmp_path / "bentoml" / "bentos" / "churn_service").glob("*/bento.yaml")
    info = yaml.safe_load(bento_yaml.read_text())
    assert info["service"] == "churnml.serving.service:ChurnService"
    (service,) = info["services"]
    assert [m["tag"] for m in service["models"]] == [f"churn-model:v{version}"]
    assert {e["name"]: e["value"] for e in info["envs"]}["CHURNML_OVERRIDES"] == '["serving.host=0.0.0.0"]'

    # Served from the store by its tag, from an empty directory: everything comes from the Bento.
    with bento_example_answer(tmp_path, env) as (body, answer):
        (record,) = body["records"]
        assert answer.status_code == 200, answer.text
        (prediction,) = answer.json()
        assert prediction["model_version"] == trained.version
        expected = trained.model.predict_proba(pd.DataFrame([record]))[0]
        assert prediction["churn_probability"] == pytest.approx(float(expected), abs=1e-9)
