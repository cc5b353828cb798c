"""The simulator in blocks and chunks: a business of one block is the simulator of before, and a business
made and written a chunk at a time is byte for byte the one made at once."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from churnml.cli import app
from churnml.config import DataConfig
from churnml.data.load import load_dataset
from churnml.data.simulate import (
    SELECT_SHARE,
    Simulation,
    _concat,
    _world,
    churn_forecast,
    simulate,
    simulate_chunks,
    write_simulation,
    write_simulation_chunks,
)

BLOCK = 120  # a small block, so that small businesses span several
PROGRAMME = {"n_customers": 500, "months": 4, "seed": 1, "programme": True, "exploration": 0.1}


def _frames(sim: Simulation) -> dict[str, pd.DataFrame]:
    frames = {**sim.tables, "truth": sim.truth}
    if sim.contact_truth is not None and sim.uplift_truth is not None:
        frames |= {"contact_truth": sim.contact_truth, "uplift_truth": sim.uplift_truth}
    return frames


def _assert_same(first: Simulation, second: Simulation) -> None:
    assert first.params == second.params and first.end == second.end
    one, other = _frames(first), _frames(second)
    assert one.keys() == other.keys()
    for name, frame in one.items():
        pd.testing.assert_frame_equal(frame, other[name], check_exact=True, obj=name)


def _digest(directory: Path) -> str:
    """One sha256 over every file's relative path and bytes."""
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(directory)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def whole() -> Simulation:
    return simulate(**PROGRAMME, block_customers=BLOCK)


# --- one block: today's simulator ------------------------------------------------------------------

# CSV files of write_simulation (all files, names and bytes) computed with the simulator before blocks
# (main at 5770f69): every business of up to one block must stay byte-identical.
GOLDEN = {
    "plain": (
        {"n_customers": 200, "months": 3, "seed": 3},
        "25cae595ade6725b46d089b1de1494f6d571b376dd5b33b822a892e75bc9f51a",
    ),
    "programme": (
        {"n_customers": 300, "months": 4, "seed": 5, "programme": True, "exploration": 0.2},
        "6e4918759b1c0bb38cd4c35adaf5167106782e669e653552e7fa27636d7e07a8",
    ),
    "signal": (
        {"n_customers": 250, "months": 3, "seed": 9, "signal": 0.5},
        "147614329f369b6a193faee43f05d2d6aeed76a4168275e18a849c0fc106322c",
    ),
}


@pytest.mark.parametrize("case", sorted(GOLDEN))
def test_one_block_is_the_simulator_before_blocks(case: str, tmp_path: Path) -> None:
    kwargs, expected = GOLDEN[case]
    out = write_simulation(simulate(**kwargs), tmp_path, fmt="csv")  # type: ignore[arg-type]
    digest = hashlib.sha256()
    for path in sorted(out.iterdir()):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    assert digest.hexdigest() == expected
    assert "block_customers" not in json.loads((out / "simulation.json").read_text())["params"]


def test_one_block_forecast_is_unchanged() -> None:
    forecast = churn_forecast(simulate(300, 3, seed=5), [pd.Timestamp("2025-02-01")], 30, futures=20)
    columns = ["customer_id", "cutoff", "churn_prob"]  # main's columns (the cause came later)
    digest = hashlib.sha256(pd.util.hash_pandas_object(forecast[columns], index=False).to_numpy().tobytes())
    assert digest.hexdigest() == "f7f02d7c177aa33e03f7692e49cee256e0c6349987683d66cd54edd786cd0e29"


def test_first_block_of_a_bigger_business_is_the_business_of_one_block(whole: Simulation) -> None:
    alone = simulate(**{**PROGRAMME, "n_customers": BLOCK})
    first = {name: frame[frame["customer_id"] <= f"C{BLOCK:06d}"] for name, frame in _frames(whole).items()}
    for name, frame in _frames(alone).items():
        pd.testing.assert_frame_equal(first[name], frame, check_exact=True, obj=name)


# --- several blocks --------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk", [1, 2 * BLOCK, 3 * BLOCK - 1, 10_000])
def test_chunks_put_together_are_the_whole_business(whole: Simulation, chunk: int) -> None:
    chunks = list(simulate_chunks(**PROGRAMME, chunk_customers=chunk, block_customers=BLOCK))
    per_chunk = max(1, chunk // BLOCK)
    assert [len(c.tables["customers"]) for c in chunks][:-1] == [per_chunk * BLOCK] * (len(chunks) - 1)
    _assert_same(_concat(chunks), whole)


def test_blocks_make_one_business(whole: Simulation) -> None:
    """Ids run on over the blocks (every table stays sorted), the blocks draw other customers, and they
    share what the business shares: the support team's crisis."""
    ids = whole.tables["customers"]["customer_id"]
    assert list(ids) == [f"C{i:06d}" for i in range(1, 501)]
    for name, frame in _frames(whole).items():
        assert frame["customer_id"].is_monotonic_increasing, name
    assert whole.params["block_customers"] == BLOCK
    signups = whole.tables["customers"]["signup_at"].dt.normalize().to_numpy()
    blocks = [signups[k * BLOCK : (k + 1) * BLOCK] for k in range(4)]
    assert all(np.all(np.diff(block) >= np.timedelta64(0)) for block in blocks)  # signup day order in a block
    assert not np.array_equal(blocks[0], blocks[1])
    worlds = [
        _world(500, 4, 1, pd.Timestamp("2025-01-01").date(), 1.0, True, 0.1, b, BLOCK) for b in range(5)
    ]
    assert len({w.crisis_start for w in worlds}) == 1
    assert [w.cust.n for w in worlds] == [120, 120, 120, 120, 20]


def test_programme_lists_the_riskiest_of_each_block(whole: Simulation) -> None:
    """The retention list is drawn up per block (a team per region): its top SELECT_SHARE of the eligible."""
    uplift = whole.uplift_truth
    assert uplift is not None
    block = (uplift["customer_id"].str[1:].astype(int) - 1) // BLOCK
    counts = uplift.assign(block=block, risk=uplift["listed"] == "risk").groupby(["listed_at", "block"])
    listed = counts["risk"].sum()
    assert (listed == np.ceil(SELECT_SHARE * counts.size())).all()


def test_forecast_covers_every_block(whole: Simulation) -> None:
    cutoff = pd.Timestamp("2025-02-01")
    forecast = churn_forecast(whole, [cutoff], 30, futures=10)
    assert forecast["customer_id"].is_monotonic_increasing
    first = forecast[forecast["customer_id"] <= f"C{BLOCK:06d}"].reset_index(drop=True)
    alone = churn_forecast(simulate(**{**PROGRAMME, "n_customers": BLOCK}), [cutoff], 30, futures=10)
    pd.testing.assert_frame_equal(first, alone, check_exact=True)
    blocks = (forecast["customer_id"].str[1:].astype(int) - 1) // BLOCK
    assert set(blocks) == {0, 1, 2, 3, 4}


# --- writing in chunks -----------------------------------------------------------------------------


def test_written_chunks_are_read_back_as_the_whole_business(whole: Simulation, tmp_path: Path) -> None:
    out = write_simulation_chunks(
        simulate_chunks(**PROGRAMME, chunk_customers=2 * BLOCK, block_customers=BLOCK), tmp_path / "sim"
    )
    assert sorted(p.name for p in (out / "events.parquet").iterdir()) == [
        f"part-0000{k}.parquet" for k in range(3)
    ]
    for name, frame in whole.tables.items():
        pd.testing.assert_frame_equal(pd.read_parquet(out / f"{name}.parquet"), frame, check_exact=True)
    pd.testing.assert_frame_equal(
        pd.read_parquet(out / "truth_renewals.parquet"), whole.truth, check_exact=True
    )
    meta = json.loads((out / "simulation.json").read_text())
    assert meta["params"] == whole.params and meta["parts"] == 3
    assert meta["rows"]["events"] == len(whole.tables["events"])
    # churnml's loader reads the part files as it reads one file per table
    single = write_simulation(whole, tmp_path / "single")
    chunked, unchunked = load_dataset(DataConfig(dir=str(out))), load_dataset(DataConfig(dir=str(single)))
    assert chunked.end == unchunked.end
    for name, frame in unchunked.tables.items():
        pd.testing.assert_frame_equal(chunked.tables[name], frame, check_exact=True, obj=name)
    again = write_simulation_chunks(
        simulate_chunks(**PROGRAMME, chunk_customers=2 * BLOCK, block_customers=BLOCK), tmp_path / "again"
    )
    assert _digest(again) == _digest(out)


def test_a_failed_chunked_write_leaves_the_previous_simulation(tmp_path: Path) -> None:
    out = write_simulation_chunks(simulate_chunks(300, 3, seed=2, block_customers=BLOCK), tmp_path / "sim")
    before = _digest(out)

    def dies_after_one_chunk() -> Iterator[Simulation]:
        chunks = simulate_chunks(300, 3, seed=3, block_customers=BLOCK)
        yield next(chunks)
        raise MemoryError("killed")

    with pytest.raises(MemoryError):
        write_simulation_chunks(dies_after_one_chunk(), out)
    assert _digest(out) == before
    assert [p.name for p in tmp_path.iterdir()] == ["sim"]  # no half-written sibling left behind


def test_refuses_to_replace_what_is_not_a_simulation(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"holds no simulation\.json"):
        write_simulation_chunks(simulate_chunks(100, 2, seed=1), tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"
    out = write_simulation_chunks(simulate_chunks(100, 2, seed=1), tmp_path / "sim")
    with pytest.raises(ValueError, match="chunked simulation"):
        write_simulation(simulate(100, 2, seed=1), out)


@pytest.mark.parametrize("bad", [{"chunk_customers": 0}, {"block_customers": 0}, {"n_customers": 0}])
def test_rejects_bad_sizes(bad: dict[str, int]) -> None:
    kwargs = {"n_customers": 100, "months": 2, "seed": 1, **bad}
    with pytest.raises(ValueError, match="must be positive"):
        simulate_chunks(**kwargs)  # type: ignore[arg-type]


def test_cli_writes_chunks_the_loader_reads(tmp_path: Path) -> None:
    runner = CliRunner()
    common = ["simulate", "--customers", "300", "--months", "3", "--seed", "4"]
    chunked = runner.invoke(app, [*common, "--out", str(tmp_path / "chunked"), "--chunk-customers", "1000"])
    assert chunked.exit_code == 0, chunked.output
    assert json.loads((tmp_path / "chunked" / "simulation.json").read_text())["parts"] == 1
    single = runner.invoke(app, [*common, "--out", str(tmp_path / "single")])
    assert single.exit_code == 0, single.output
    assert (tmp_path / "chunked" / "events.parquet" / "part-00000.parquet").is_file()
    for name in ("customers", "events", "tickets"):
        pd.testing.assert_frame_equal(
            pd.read_parquet(tmp_path / "chunked" / f"{name}.parquet"),
            pd.read_parquet(tmp_path / "single" / f"{name}.parquet"),
            check_exact=True,
        )
    csv = runner.invoke(
        app, [*common, "--out", str(tmp_path / "c"), "--chunk-customers", "9", "--format", "csv"]
    )
    assert csv.exit_code == 2 and "--format parquet" in csv.output
