"""churnml works from its wheel, outside the repository, and its MLflow model from its requirements.

Offline by design (nothing is downloaded at test time): the wheel is built without build isolation (as
``churnml bento`` does) and installed with ``pip install --no-index``. A fresh virtualenv outside the
repository sees the third-party packages already installed for this interpreter through a *shadow*
site directory: links to every entry of this interpreter's site-packages except churnml's own (its
dist-info and the editable install's ``.pth``), so neither the checkout's ``src/`` nor the editable install
leaks in, and ``churnml`` can only come from the wheel.

"Made from the model's ``requirements.txt`` alone" means, offline: ``pip install --no-index
--find-links <wheel dir> -r requirements.txt`` in a venv holding only the third-party packages. pip must
satisfy every pinned line (churnml's own dependencies included) from what is installed and the churnml
wheel; anything missing or at another version would need a download, which ``--no-index`` refuses.

``wheel_venv`` (module fixture) yields the wheel venv's ``bin`` directory: serving checks from the wheel
(``churnml serve``, ``bentoml serve churnml.serving.service:ChurnService``) extend this module with it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

import churnml

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("wheel")]

REPOSITORY = Path(__file__).resolve().parents[2]
CHURNML_ENTRY = re.compile(r"^_*(editable[_.]*)?(impl_)?churnml", re.IGNORECASE)
# Small: the demo trains on a few hundred customers with a two-trial study.
DEMO = [
    "simulate.customers=600",
    "simulate.months=8",
    "tune.n_trials=2",
    "tune.startup_trials=1",
    "tune.progress_bar=false",
    "model.max_rounds=100",
    "model.early_stopping_rounds=10",
    "model.nthread=1",
    "output.dir=out",
]


def run(command: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run outside the repository, with no Python path or MLflow store inherited from the test."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "MLFLOW_", "VIRTUAL_ENV", "PIP_"))
    }
    # No pip configuration either (a machine's find-links or extra index): only what the command names.
    env |= {"MPLBACKEND": "Agg", "PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1"}
    env |= {"PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    return done


def shadow_site(directory: Path) -> Path:
    """Links to this interpreter's installed packages, churnml's own entries left out."""
    directory.mkdir()
    sources = dict.fromkeys(Path(sysconfig.get_path(key)) for key in ("purelib", "platlib"))
    for source in sources:
        for entry in source.iterdir():
            if not CHURNML_ENTRY.match(entry.name) and not (directory / entry.name).exists():
                (directory / entry.name).symlink_to(entry)
    return directory


def make_venv(path: Path, third_party: Path) -> Path:
    """A fresh venv (no pip of its own: the shadow's pip runs in it) that sees ``third_party``."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    python = path / "bin" / "python"
    site = run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], path)
    # addsitedir also runs the third-party .pth files (churnml's editable one is not in the shadow).
    (Path(site.stdout.strip()) / "_third_party.pth").write_text(
        f"import site; site.addsitedir({str(third_party)!r})\n"
    )
    return path / "bin"


@pytest.fixture(scope="module")
def outside(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("outside")
    assert REPOSITORY not in path.parents
    return path


@pytest.fixture(scope="module")
def wheel(outside: Path) -> Path:
    dist = outside / "dist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-q",
            *("-w", str(dist), str(REPOSITORY)),
        ],
        check=True,
    )
    (built,) = dist.glob("churnml-*.whl")
    return built


@pytest.fixture(scope="module")
def third_party(outside: Path) -> Path:
    return shadow_site(outside / "third-party")


@pytest.fixture(scope="module")
def wheel_venv(outside: Path, wheel: Path, third_party: Path) -> Iterator[Path]:
    """The ``bin`` directory of a fresh venv with churnml installed from the wheel (and only from it)."""
    bin_dir = make_venv(outside / "venv", third_party)
    run(
        [str(bin_dir / "python"), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        outside,
    )
    yield bin_dir


@pytest.fixture(scope="module")
def demo(wheel_venv: Path, outside: Path) -> tuple[Path, str]:
    """``churnml demo`` (small) run from a directory outside the repository; its working directory."""
    workdir = outside / "demo"
    workdir.mkdir()
    done = run([str(wheel_venv / "churnml"), "demo", *DEMO], workdir, timeout=900)
    return workdir, done.stdout


def test_the_wheel_carries_the_report_template(wheel: Path) -> None:
    import zipfile

    names = zipfile.ZipFile(wheel).namelist()
    assert "churnml/risk/templates/risk_report.html.j2" in names
    assert not [n for n in names if n.startswith(("tests/", "src/", "notebooks/"))]


def test_churnml_imports_from_the_wheel_not_the_checkout(wheel_venv: Path, outside: Path) -> None:
    done = run(
        [
            str(wheel_venv / "python"),
            "-c",
            "import churnml, sys, importlib.metadata as m; "
            "print(churnml.__file__); print(m.version('churnml')); print(m.distribution('churnml')._path)",
        ],
        outside,
    )
    module, version, metadata = done.stdout.split("\n")[:3]
    venv = wheel_venv.parent.resolve()
    assert Path(module).resolve().is_relative_to(venv), module
    assert Path(metadata).resolve().is_relative_to(venv), metadata
    assert version == churnml.__version__
    assert not Path(module).resolve().is_relative_to(REPOSITORY)


def test_version(wheel_venv: Path, outside: Path) -> None:
    done = run([str(wheel_venv / "churnml"), "--version"], outside)
    assert done.stdout.strip() == f"churnml {churnml.__version__}"


def test_demo_runs_from_the_wheel_and_writes_its_outputs(demo: tuple[Path, str]) -> None:
    workdir, stdout = demo
    out = workdir / "out"
    assert "churnml demo: score" in stdout
    assert (out / "mlflow.db").is_file()
    assert (out / "churnml" / "train" / "evaluation" / "metrics.json").is_file()
    risk_list = pd.read_csv(out / "churnml" / "score" / "risk_list.csv")
    assert len(risk_list) > 0 and risk_list["churn_probability"].between(0, 1).all()
    report = (out / "churnml" / "score" / "risk_report.html").read_text()
    assert "data:image/png;base64," in report  # the template came from the wheel and the plots were drawn


def test_the_mlflow_model_loads_and_predicts_in_a_venv_made_from_its_requirements(
    demo: tuple[Path, str], wheel: Path, third_party: Path, outside: Path
) -> None:
    workdir, _ = demo
    store = f"sqlite:///{workdir / 'out' / 'mlflow.db'}"
    uri = "models:/churn-model@champion"
    from mlflow.artifacts import download_artifacts

    from churnml.config import load_config
    from churnml.training.tracking import store as mlflow_store

    with mlflow_store(load_config(None, [f"tracking.uri={store}"])):
        local = Path(download_artifacts(uri, dst_path=str(outside / "model")))
    requirements = (local / "requirements.txt").read_text().split()
    assert f"churnml=={churnml.__version__}" in requirements

    bin_dir = make_venv(outside / "model-venv", third_party)
    python = str(bin_dir / "python")
    run(
        [
            python,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-index",
            *("--find-links", str(wheel.parent)),
            *("-r", str(local / "requirements.txt")),
        ],
        outside,
    )
    script = (
        "import json, sys, churnml, mlflow.pyfunc\n"
        "from mlflow.models import Model\n"
        "model = mlflow.pyfunc.load_model(sys.argv[1])\n"
        "frame = Model.load(sys.argv[1]).load_input_example(sys.argv[1])\n"
        "print(json.dumps({'module': churnml.__file__, 'p': [float(p) for p in model.predict(frame)]}))\n"
    )
    done = run([python, "-c", script, str(local)], outside)
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(answer["module"]).resolve().is_relative_to((outside / "model-venv").resolve())

    from mlflow.models import Model

    from churnml.training.mlflow_model import ARTIFACT
    from churnml.training.model import load_model

    frame = Model.load(str(local)).load_input_example(str(local))
    expected = load_model(local / "artifacts" / ARTIFACT).predict_proba(frame)
    assert answer["p"] == pytest.approx(list(map(float, expected)), abs=1e-12)
