"""What each endpoint computes, as plain Python: tested without a server, built from the batch pipeline's
pieces.

``ChurnModel.predict_proba`` (same casting and trees), ``risk.band_of`` (same thresholds),
``explain.Explainer`` (same drivers) and, for raw histories, ``data.dataset_from_frames`` (same
validation) and ``features.build_features`` (same feature code, the model's own specs). The
BentoML service (``churnml.serving.service``) is a thin shell around :class:`Scorer`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np
import pandas as pd

from churnml import io
from churnml.config import Config
from churnml.data.load import FUTURE_TOLERANCE, canonical_id, dataset_from_frames, strays_checked
from churnml.errors import ChurnmlError, DataValidationError
from churnml.features.value import customer_value
from churnml.risk.explain import Explainer, contributions
from churnml.risk.risk_list import applicable, assign_groups, band_of, load_playbook
from churnml.serving.fast_path import FastPath
from churnml.serving.loading import LoadedModel, uplift_label
from churnml.serving.schemas import (
    DriverOut,
    Explanation,
    HistoryScore,
    Prediction,
    UpliftExplanation,
    UpliftHistoryScore,
    UpliftPrediction,
    error_body,
    history_tables,
    records_frame,
    tables_of,
)
from churnml.training.model import ChurnModel
from churnml.uplift.mlflow_model import LoadedUplift
from churnml.uplift.targeting import targeting


class ClientError(ChurnmlError):
    """A request the model cannot score because of its content (answered 422, naming where)."""

    def __init__(self, message: str, loc: Sequence[str | int] = ()):
        super().__init__(message)
        self.loc = list(loc)

    def body(self) -> dict[str, Any]:
        return error_body(str(self), "invalid_request", self.loc)


ID_SEPARATOR = "\x1f"  # between a request's position and a customer id when requests are scored together


@dataclass(frozen=True)
class HistoryRequest:
    """One ``/score_history`` request: validated histories, the moment to score at (None: now), how many
    drivers, whether to return the features."""

    histories: Sequence[Any]
    as_of: datetime | None
    top_k: int
    include_features: bool


Checked = tuple[HistoryRequest, datetime]  # a request that passed ``_check_history`` at this moment
HistoryAnswer = list[HistoryScore] | Exception  # a ClientError is a 422; any other exception a 500


def _check_history(histories: Sequence[Any], as_of: datetime) -> None:
    """Refuse a moment in the future, or customers who had not signed up by then."""
    if as_of > datetime.now(UTC).replace(tzinfo=None) + FUTURE_TOLERANCE:
        raise ClientError("as_of lies in the future: nothing is known about customers then", ["as_of"])
    for index, history in enumerate(histories):
        if history.customer.signup_at >= as_of:
            raise ClientError(
                f"customer {history.customer.customer_id!r} signed up at {history.customer.signup_at}, "
                f"not before as_of {as_of}: there is nothing to score yet",
                ["customers", index, "customer", "signup_at"],
            )


class ScoringPath(Protocol):
    """How rows become probabilities and contributions: :class:`FastPath` or :class:`ModelPath`."""

    def records(self, records: Sequence[Any]) -> Any: ...

    def frame(self, frame: pd.DataFrame) -> Any: ...

    def proba(self, rows: Any) -> np.ndarray: ...

    def contributions(self, rows: Any) -> np.ndarray: ...

    def feature_values(self, rows: Any) -> Sequence[Sequence[Any] | np.ndarray]: ...


class ModelPath:
    """``ChurnModel``'s own path through a prepared frame: the reference, and what a regression (or a
    booster the fast path disagrees with) is served by."""

    def __init__(self, model: ChurnModel) -> None:
        self.model = model

    def records(self, records: Sequence[Any]) -> pd.DataFrame:
        return self.model.prepare(records_frame(self.model, records))

    def frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        return self.model.prepare(frame)

    def proba(self, rows: pd.DataFrame) -> np.ndarray:
        return self.model.predict_proba(rows)

    def contributions(self, rows: pd.DataFrame) -> np.ndarray:
        return contributions(self.model, rows)

    def feature_values(self, rows: pd.DataFrame) -> Sequence[Sequence[Any] | np.ndarray]:
        return [rows[c.name].to_numpy(dtype=object) for c in self.model.columns]


class Scorer:
    """The served model with everything scoring needs, built once per worker.

    One decision at start-up: the fast path when it gives ``ChurnModel``'s probabilities and
    contributions bit for bit (:meth:`FastPath.checked`), else ``ChurnModel``'s own path; every endpoint
    then goes through ``self.path``.
    """

    def __init__(
        self,
        loaded: LoadedModel,
        config: Config,
        on_scores: Callable[[np.ndarray], object] | None = None,
        uplift: LoadedUplift | None = None,
    ) -> None:
        self.loaded, self.config = loaded, config
        self.on_scores = on_scores  # sees every batch of probabilities answered (the drift gauges)
        model = loaded.model
        self.explainer = Explainer.of(model, None, config.risk.exclude_from_reasons)
        fast = None
        if model.linear is None:
            # Each worker is its own process with its own model: cap XGBoost's threads per worker.
            model.trained_booster.set_param({"nthread": config.serving.nthread})
            fast = FastPath.checked(model, config.serving.nthread)
        self.path: ScoringPath = fast if fast is not None else ModelPath(model)
        self.uplift = uplift
        # The playbook (which play a risk group gets, what a contact costs) matters only for uplift.
        self.playbook = load_playbook(config.risk.playbook) if uplift is not None else None
        self.costs: dict[str, float] = {}
        self.uplift_version = "" if uplift is None else uplift_label(uplift)
        if uplift is not None and self.playbook is not None:
            self.costs = self.playbook.play_costs(list(uplift.model.plays), config.campaign.cost_per_contact)
            # A customer_value feature the model lacks is a config error: at start-up, not per request.
            customer_value(pd.DataFrame(columns=model.feature_names), config.customer_value)
        self.shapes = (
            (UpliftPrediction, UpliftExplanation, UpliftHistoryScore)
            if uplift is not None
            else (Prediction, Explanation, HistoryScore)
        )

    @property
    def fast(self) -> FastPath | None:
        """The fast path, when the start-up check chose it."""
        return self.path if isinstance(self.path, FastPath) else None

    @property
    def model(self) -> ChurnModel:
        return self.loaded.model

    @property
    def version(self) -> str:
        return self.loaded.version

    def probabilities(self, records: Sequence[Any]) -> np.ndarray:
        """``ChurnModel.predict_proba`` of validated feature records."""
        return self.path.proba(self.path.records(records))

    def predict(self, records: Sequence[Any]) -> list[Prediction]:
        """Calibrated probability, band and model version per validated feature record."""
        if not records:
            return []
        ids = [record.customer_id for record in records]
        rows = self.path.records(records)
        answers = self._predictions(ids, self.path.proba(rows))
        if self.uplift is not None:
            at_risk = [k for k, answer in enumerate(answers) if answer["at_risk"]]
            groups = np.full(len(records), None, dtype=object)
            if at_risk and self.config.uplift.plays == "risk_group":
                # The play that applies is the risk group's: TreeSHAP of the at-risk records only.
                subset = self.path.records([records[k] for k in at_risk])
                groups[at_risk] = self._groups(subset)
            self._add_uplift(answers, rows, groups, records)
        return [self.shapes[0].model_construct(**row) for row in answers]

    def explain(self, records: Sequence[Any], top_k: int) -> list[Explanation]:
        """The prediction plus the top drivers as sentences with their SHAP contributions."""
        if not records:
            return []
        answers = self._explained(
            [r.customer_id for r in records], self.path.records(records), top_k, records
        )
        return [self.shapes[1].model_construct(**row) for row in answers]

    def score_history(
        self, histories: Sequence[Any], as_of: datetime | None, top_k: int, include_features: bool
    ) -> list[HistoryScore]:
        """Probability, band and drivers of each customer's history at ``as_of`` (default: now)."""
        answer = self.score_histories([HistoryRequest(histories, as_of, top_k, include_features)])[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def score_histories(self, requests: Sequence[HistoryRequest]) -> list[HistoryAnswer]:
        """The answer to each request, or the error that refuses it (a ``ClientError``, or any other
        exception, which fails that request only), scored together.

        Building features from one customer's history costs about what it costs for a few dozen (the
        contract checks and builders have a fixed cost per call), so concurrent requests are scored in
        one call; features of one customer never read another's rows, so each answer equals the request
        scored alone. Two things keep it so: a request large enough to be checked for stray rows (a
        check of the whole data, see ``data.load.strays_checked``) is scored alone, and when the combined
        scoring fails, each request is scored alone, so that an error names its own request's rows.
        """
        answers: list[HistoryAnswer] = []
        together: list[tuple[int, Checked]] = []
        alone: list[tuple[int, Checked]] = []
        for request in requests:
            as_of = request.as_of or datetime.now(UTC).replace(tzinfo=None)
            try:
                _check_history(request.histories, as_of)
            except ClientError as exc:
                answers.append(exc)
                continue
            time_values = sum(1 + sum(len(getattr(h, t)) for t in tables_of(h)) for h in request.histories)
            (alone if strays_checked(time_values) else together).append((len(answers), (request, as_of)))
            answers.append([])
        if len(together) > 1:
            try:
                for (index, _), scored in zip(together, self._scored([c for _, c in together]), strict=True):
                    answers[index] = scored
            except Exception:  # one of them is at fault: each alone names its own error
                alone += together
        else:
            alone += together
        for index, checked in alone:
            try:
                answers[index] = self._scored([checked])[0]
            except Exception as exc:  # a ClientError (422), or a fault of this request only
                answers[index] = exc
        return answers

    def _scored(self, checked: Sequence[Checked]) -> list[list[HistoryScore]]:
        """Checked requests, each with its moment, through one validation and one feature build.

        Customers are keyed by their id's canonical form (as the contract stores it: ``17.0`` is ``17``),
        prefixed, when several requests go together, by the request's position (requests may share
        customers); answers give each id as it was sent.
        """
        histories = [h for r, _ in checked for h in r.histories]
        as_ofs = [as_of for r, as_of in checked for _ in r.histories]
        together = len(checked) > 1
        ids = [
            f"{k}{ID_SEPARATOR}{canonical_id(h.customer.customer_id)}"
            if together
            else canonical_id(h.customer.customer_id)
            for k, (r, _) in enumerate(checked)
            for h in r.histories
        ]
        frame = self.history_features(histories, as_ofs, ids)
        sent = [h.customer.customer_id for h in histories]
        # Every step scores a row on its own (the encoding, XGBoost's margins and SHAP values, the
        # per-signal sums), so scoring the rows of several requests at once changes no answer.
        rows = self._explained(sent, self.path.frame(frame), max(r.top_k for r, _ in checked), frame)
        names = self.model.feature_names
        answers, start = [], 0
        for request, as_of in checked:
            answer = []
            for position in range(start, start + len(request.histories)):
                row = rows[position]
                row["drivers"] = row["drivers"][: request.top_k]  # the strongest first
                row["as_of"] = as_of.replace(tzinfo=UTC)  # RFC 3339 needs the zone: naive is UTC
                row["features"] = (
                    {name: io.strict(frame[name].iloc[position]) for name in names}
                    if request.include_features
                    else None
                )
                answer.append(self.shapes[2].model_construct(**row))
            answers.append(answer)
            start += len(request.histories)
        return answers

    def history_features(
        self, histories: Sequence[Any], as_of: datetime | Sequence[datetime], ids: Sequence[str]
    ) -> pd.DataFrame:
        """Features of each customer at ``as_of`` (one, or one per history) from their raw history, by the
        training feature code, in the order of ``histories``; ``ids`` key the customers (one per history,
        in the contract's canonical form)."""
        from churnml.features import build_features

        try:
            dataset = dataset_from_frames(history_tables(histories, ids))
        except DataValidationError as exc:
            problem = exc.problem + (f"\n{exc.examples}" if exc.examples else "")
            raise ClientError(
                problem, ["customers", exc.table, *([exc.column] if exc.column else [])]
            ) from None
        as_ofs = [as_of] * len(histories) if isinstance(as_of, datetime) else list(as_of)
        cutoffs = pd.DataFrame(
            {"customer_id": list(ids), "cutoff": pd.Series(as_ofs, dtype="datetime64[ns]")}
        )
        frame = build_features(dataset, cutoffs, self.config.features, specs=list(self.model.specs))
        numeric = [c.name for c in self.model.columns if c.dtype != "category"]
        infinite = np.isinf(frame[numeric].to_numpy(dtype=float))
        if infinite.any():
            row, column = (int(i[0]) for i in np.nonzero(infinite))
            raise ClientError(
                f"the history gives feature {numeric[column]!r} an infinite value", ["customers", row]
            )
        return frame

    def _explained(
        self, ids: Sequence[str | None], rows: Any, top_k: int, source: Sequence[Any] | pd.DataFrame
    ) -> list[dict[str, Any]]:
        """Predictions with drivers of rows the path encoded: the one explain path of every endpoint;
        with an uplift model, its fields too (``source``: the records or feature frame encoded)."""
        contribs = self.path.contributions(rows)
        values = self.path.feature_values(rows)
        drivers = self.explainer.drivers_of_values(values, contribs, top_k)
        answers = self._predictions(ids, self.path.proba(rows))
        for answer, found in zip(answers, drivers, strict=True):
            answer["drivers"] = [DriverOut.model_construct(**finite_driver(d.as_dict())) for d in found]
        if self.uplift is not None:
            at_risk = np.array([answer["at_risk"] for answer in answers], dtype=bool)
            groups = np.full(len(answers), None, dtype=object)
            groups[at_risk] = self._groups(rows, values, contribs)[at_risk]
            self._add_uplift(answers, rows, groups, source)
        return answers

    def _groups(
        self, rows: Any, values: Sequence[Any] | None = None, contribs: np.ndarray | None = None
    ) -> np.ndarray:
        """Each row's risk group, as the risk list assigns it (``churnml.risk.drivers``)."""
        assert self.playbook is not None  # built with the uplift model
        contribs = self.path.contributions(rows) if contribs is None else contribs
        values = self.path.feature_values(rows) if values is None else values
        per_signal = self.explainer.group_signals(values, contribs, self.config.risk.segments.new_days)
        return assign_groups(per_signal, self.explainer.signals, self.playbook)

    def _uplift_effects(self, rows: Any, source: Sequence[Any] | pd.DataFrame) -> pd.DataFrame:
        """Every play's uplift of the encoded ``rows``: from the fast path's matrix itself when the uplift
        model reads the churn model's columns (the same encoding), else from the features' frame."""
        assert self.uplift is not None
        if self.fast is not None and self.uplift.model.inputs.columns == self.model.columns:
            return self.uplift.model.effects_of_encoded(rows.matrix)
        frame = source if isinstance(source, pd.DataFrame) else records_frame(self.model, source)
        return self.uplift.model.effects(frame.reset_index(drop=True))

    def _value(self, rows: Any, count: int) -> np.ndarray:
        """Each row's customer value (``customer_value``), from the value feature as it was sent."""
        feature = self.config.customer_value.feature
        names = self.model.feature_names
        columns = {}
        if feature in names:
            columns[feature] = np.array(
                self.path.feature_values(rows)[names.index(feature)], dtype=np.float64
            )
        return customer_value(pd.DataFrame(columns, index=range(count)), self.config.customer_value)[0]

    def _add_uplift(
        self,
        answers: list[dict[str, Any]],
        rows: Any,
        groups: np.ndarray,
        source: Sequence[Any] | pd.DataFrame,
    ) -> None:
        """Each answer's uplift fields, by the functions that make the risk list's uplift columns
        (``risk_list.applicable`` and ``targeting.targeting``) on the encoded ``rows`` of ``source``."""
        assert self.uplift is not None and self.playbook is not None
        effects = applicable(
            self._uplift_effects(rows, source),
            pd.Series(groups, dtype=object),
            self.playbook,
            self.config.uplift.plays,
        )
        value = self._value(rows, len(answers))
        chosen = targeting(effects, value, self.costs, self.config.uplift.sleeping_dog_tolerance)
        plays = [str(p) for p in effects.columns]
        lift = effects.to_numpy(dtype=np.float64)
        best = chosen["best_play"].to_numpy(dtype=object)
        uplift, net = chosen["uplift"].to_numpy(np.float64), chosen["net_value"].to_numpy(np.float64)
        dogs = chosen["sleeping_dog"].to_numpy(dtype=bool)
        for k, answer in enumerate(answers):
            answer["uplift"] = io.strict(uplift[k])
            answer["best_play"] = best[k]
            answer["net_value"] = io.strict(net[k])
            answer["sleeping_dog"] = bool(dogs[k])
            answer["uplift_by_play"] = {p: io.strict(lift[k, j]) for j, p in enumerate(plays)}
            answer["uplift_model_version"] = self.uplift_version

    def _predictions(self, ids: Sequence[str | None], probability: np.ndarray) -> list[dict[str, Any]]:
        if self.on_scores is not None and len(probability):
            self.on_scores(probability)
        bands = band_of(probability, self.config.risk.bands)
        threshold = self.config.risk.at_risk_threshold
        return [
            {
                "customer_id": customer,
                "churn_probability": float(p),
                "risk_band": str(band),
                "at_risk": bool(p >= threshold),
                "model_version": self.version,
            }
            for customer, p, band in zip(ids, probability, bands, strict=True)
        ]


def finite_driver(driver: dict[str, Any]) -> dict[str, Any]:
    """A driver's fields as JSON allows them (a NaN value or typical becomes null)."""
    return {k: io.strict(v) if k in ("value", "typical") else v for k, v in driver.items()}
