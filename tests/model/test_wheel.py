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

``wheel_venv`` (module fixture) yields the wheel venv's ``bin`` directory. The service runs from it too:
``churnml serve`` and ``python -m bentoml serve churnml.serving.service:ChurnService`` (the venv has no
``bentoml`` script: its third-party packages come through a ``.pth``) serve the demo's champion from a
directory outside the repository, and answer ``/predict`` with the wheel's churnml.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import psutil
import pytest
import requests

import churnml
from churnml.config import load_config
from churnml.serving import launch
from churnml.serving.loading import load_served_model

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


def outside_env() -> dict[str, str]:
    """This environment without a Python path, MLflow store, churnml setting or pip configuration."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTHON", "MLFLOW_", "VIRTUAL_ENV", "PIP_", "CHURNML_", "BENTOML_"))
    }
    # No pip configuration either (a machine's find-links or extra index): only what the command names.
    env |= {"MPLBACKEND": "Agg", "PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1"}
    return env | {"PIP_DISABLE_PIP_VERSION_CHECK": "1"}


def run(command: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run outside the repository, with no Python path or MLflow store inherited from the test."""
    done = subprocess.run(
        command, cwd=cwd, env=outside_env(), capture_output=True, text=True, timeout=timeout
    )
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
    return launch.build_wheel(REPOSITORY, outside / "dist")


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
    # The demo ends with the review of its earlier list, whose page is rendered from the wheel too.
    assert "churnml demo: review the list of" in stdout
    [page] = (out / "churnml" / "review").glob("*/review.html")
    assert "Did it work?" in page.read_text()


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


# ---------------------------------------------------------------------------------------------------
# Serving from the wheel: the demo's champion, served from a directory outside the repository.


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve_from_the_wheel(
    how: str, bin_dir: Path, store: str, workdir: Path, port: int
) -> tuple[list[str], dict[str, str]]:
    """The command and environment of one way to start the service: ``churnml serve`` (the config as
    overrides; it sets the service's environment itself), or BentoML's CLI on the package module with the
    environment ``churnml serve`` would set (``CHURNML_OVERRIDES``, ``CHURNML_MODEL_URI``).

    This venv's third-party packages come through a ``.pth``, so it has no ``bentoml`` script of its own:
    BentoML's CLI is ``python -m bentoml`` here, and ``churnml serve`` must find it the same way."""
    env = outside_env() | {
        "BENTOML_HOME": str(workdir / "bentoml-home"),  # one per server: a starting one wipes its metrics
        "BENTOML_DO_NOT_TRACK": "true",
        "PYTHONUNBUFFERED": "1",
    }
    address = ["--host", "127.0.0.1", "--port", str(port)]
    if how == "churnml serve":
        return [str(bin_dir / "churnml"), "serve", *address, f"tracking.uri={store}"], env
    env |= {
        "CHURNML_OVERRIDES": json.dumps([f"tracking.uri={store}"]),
        "CHURNML_MODEL_URI": "models:/churn-model@champion",
    }
    return [
        str(bin_dir / "python"),
        "-m",
        "bentoml",
        "serve",
        "churnml.serving.service:ChurnService",
        *address,
    ], env


@pytest.mark.parametrize("how", ["churnml serve", "bentoml serve"])
def test_the_service_runs_from_the_wheel(
    how: str, demo: tuple[Path, str], wheel_venv: Path, outside: Path, tmp_path: Path
) -> None:
    demo_dir, _ = demo
    store = f"sqlite:///{demo_dir / 'out' / 'mlflow.db'}"
    venv = wheel_venv.parent.resolve()
    site = Path(
        run(
            [str(wheel_venv / "python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            outside,
        ).stdout.strip()
    )
    service_source = site / "churnml" / "serving" / "service.py"
    assert service_source.is_file()
    # The bytecode of the wheel's service module is written again only when a process imports that file.
    cache = service_source.parent / "__pycache__"
    for compiled in cache.glob("service.*.pyc"):
        compiled.unlink()

    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    assert REPOSITORY not in workdir.resolve().parents
    port = free_port()
    command, env = serve_from_the_wheel(how, wheel_venv, store, workdir, port)
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            command, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        url = f"http://127.0.0.1:{port}"
        launch.wait_ready(url, timeout_s=180, server=server, log=log)

        # Every Python process of the server is this venv's interpreter, with no Python path of the test's.
        processes = [psutil.Process(server.pid), *psutil.Process(server.pid).children(recursive=True)]
        pythons = [p for p in processes if Path(p.cmdline()[0]).name.startswith("python")]
        assert pythons, [p.cmdline() for p in processes]
        for process in pythons:
            assert Path(process.cmdline()[0]).parent == wheel_venv, process.cmdline()
            assert not any(k.startswith("PYTHONPATH") for k in process.environ()), process.cmdline()
            assert not Path(process.cwd()).resolve().is_relative_to(REPOSITORY)
        # ... and what it imported was the wheel's churnml, in this venv's site-packages.
        assert list(cache.glob("service.*.pyc")), f"{service_source} was not imported by {how}"
        assert service_source.resolve().is_relative_to(venv)

        document = requests.get(f"{url}/docs.json", timeout=30).json()
        body = document["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["example"]
        (record,) = body["records"]
        answer = requests.post(f"{url}/predict", json=body, timeout=60)
        assert answer.status_code == 200, answer.text
        (prediction,) = answer.json()
        assert 0.0 <= prediction["churn_probability"] <= 1.0
        champion = load_served_model(load_config(None, [f"tracking.uri={store}"]))
        assert prediction["model_version"] == champion.version
        expected = champion.model.predict_proba(pd.DataFrame([record]))[0]
        assert prediction["churn_probability"] == pytest.approx(float(expected), abs=1e-9)
    finally:
        launch.stop(server)
