"""Model registry: register each trained model, label it ``challenger``, promote it to ``champion`` only
if it beats the current champion on the same test rows (or there is none).

Aliases, not the deprecated stages. Both figures and the decision are kept as version tags (and logged
in the run by the pipeline), so ``churnml models`` shows why each version holds its alias.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from churnml.errors import DataValidationError, ModelLoadError

CHAMPION, CHALLENGER = "champion", "challenger"
LOWER_IS_BETTER = {"log_loss", "brier", "ece"}


@dataclass(frozen=True)
class Decision:
    """Outcome of the champion/challenger comparison on one test cutoff."""

    promoted: bool
    reason: str
    metric: str
    challenger: float
    champion: float | None
    champion_version: str | None

    def as_tags(self) -> dict[str, str]:
        return {
            "promotion.promoted": str(self.promoted).lower(),
            "promotion.reason": self.reason,
            "promotion.metric": self.metric,
            "promotion.challenger_score": f"{self.challenger:.6f}",
            "promotion.champion_score": "" if self.champion is None else f"{self.champion:.6f}",
            "promotion.champion_version": self.champion_version or "",
        }


def decide(
    metric: str,
    challenger: float,
    champion: float | None,
    champion_version: str | None,
    min_improvement: float = 0.0,
    comparable: bool = True,
) -> Decision:
    """Pure decision rule: promote when there is no champion, or the challenger is better by more than
    ``min_improvement`` (higher AUC; lower log loss/Brier). A champion that cannot score the same rows
    (``comparable=False``) keeps its place: promote by hand after checking."""
    if champion_version is None:
        return Decision(True, "no champion yet", metric, challenger, None, None)
    if not comparable or champion is None:
        reason = "champion cannot score this test set (different features); kept, promote by hand"
        return Decision(False, reason, metric, challenger, champion, champion_version)
    gain = champion - challenger if metric in LOWER_IS_BETTER else challenger - champion
    promoted = gain > min_improvement
    verb = "beats" if promoted else "does not beat"
    reason = f"challenger {verb} champion v{champion_version} on {metric}: {challenger:.4f} vs {champion:.4f}"
    if min_improvement and not promoted and gain > 0:
        reason += f" (needs a margin of {min_improvement})"
    return Decision(promoted, reason, metric, challenger, champion, champion_version)


def alias_version(client: MlflowClient, name: str, alias: str) -> Any | None:
    """The model version holding ``alias``, or None (no such model or alias)."""
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


@dataclass(frozen=True)
class ModelRef:
    """A model URI as it is loaded: an alias resolved to the version holding it now, so the version
    reported is the one loaded even if the alias moves meanwhile."""

    uri: str
    name: str | None = None  # the registered model, for models:/<name>/<version> and models:/<name>@<alias>
    version: str | None = None  # None for a directory, a run or a logged model id

    @property
    def label(self) -> str:
        """``churn-model/3`` for a registry version, else the URI."""
        return f"{self.name}/{self.version}" if self.version is not None else self.uri


def champion_uri(name: str) -> str:
    """The registered champion of ``name``: the model scored and served by default."""
    return f"models:/{name}@{CHAMPION}"


def resolve(uri: str, client: MlflowClient | None = None) -> ModelRef:
    """What ``uri`` names in the registry (the active tracking store). ``models:/<name>@<alias>`` becomes
    that version's URI; an alias nobody holds is a ModelLoadError saying how to get one."""
    if not uri.startswith("models:/"):
        return ModelRef(uri)
    path = uri.removeprefix("models:/")
    if "@" in path:
        name, alias = path.split("@", 1)
        found = alias_version(client or MlflowClient(), name, alias)
        if found is None:
            raise ModelLoadError(
                f"no model version of {name!r} holds the alias {alias!r} in {mlflow.get_tracking_uri()}: "
                "train and register one (`churnml train`) or promote a version (`churnml promote <version>`)"
            )
        return ModelRef(f"models:/{name}/{found.version}", name, str(found.version))
    if path.count("/") == 1:
        name, version = path.split("/")
        return ModelRef(uri, name, version)
    return ModelRef(uri)


def register(model_uri: str, name: str, tags: dict[str, Any]) -> Any:
    """Register a logged model as a new version of ``name`` and give it the challenger alias."""
    version = mlflow.register_model(model_uri, name, tags={k: str(v) for k, v in tags.items()})
    MlflowClient().set_registered_model_alias(name, CHALLENGER, version.version)
    return version


def apply(decision: Decision, name: str, version: str) -> None:
    """Record the decision on the version and move the champion alias if promoted."""
    client = MlflowClient()
    for key, value in decision.as_tags().items():
        client.set_model_version_tag(name, version, key, value)
    if decision.promoted:
        promote(name, version, reason=decision.reason)


def promote(name: str, version: str, alias: str = CHAMPION, reason: str = "manual") -> None:
    """Point ``alias`` at ``version`` (the previous holder loses it) and note when and why."""
    client = MlflowClient()
    client.get_model_version(name, version)  # fails clearly if the version does not exist
    client.set_registered_model_alias(name, alias, version)
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    client.set_model_version_tag(name, version, f"{alias}.since", stamp)
    client.set_model_version_tag(name, version, f"{alias}.reason", reason)


def versions(name: str) -> list[dict[str, Any]]:
    """Every version of a registered model, newest first, with its aliases and test figures."""
    client = MlflowClient()
    try:
        found = client.search_model_versions(f"name = '{name}'", max_results=1000)
        # Version search results carry no aliases in every store: read them from the model.
        aliases = client.get_registered_model(name).aliases
    except MlflowException:
        return []
    rows = []
    for v in sorted(found, key=lambda v: int(v.version), reverse=True):
        held = sorted(alias for alias, version in aliases.items() if str(version) == str(v.version))
        rows.append(
            {
                "version": str(v.version),
                "aliases": ", ".join(held),
                "created": datetime.fromtimestamp(v.creation_timestamp / 1000, UTC).strftime(
                    "%Y-%m-%d %H:%M"
                ),
                "run_id": v.run_id,
                "tags": dict(v.tags or {}),
            }
        )
    return rows


def register_and_decide(
    model_uri: str,
    name: str,
    metric: str,
    challenger_score: float,
    champion_score: Callable[[str], float],
    min_improvement: float = 0.0,
    tags: dict[str, Any] | None = None,
) -> tuple[str, Decision]:
    """Register the new version as challenger, score the current champion with ``champion_score(uri)``
    on the same rows, decide, and move the champion alias if the challenger wins.

    ``champion_score`` raises DataValidationError when the champion cannot score these rows.
    """
    current = alias_version(MlflowClient(), name, CHAMPION)
    champion_version = None if current is None else str(current.version)
    score, comparable = None, True
    if champion_version is not None:
        try:
            score = champion_score(f"models:/{name}/{champion_version}")
        except DataValidationError:
            comparable = False
    version = str(register(model_uri, name, tags or {}).version)
    decision = decide(metric, challenger_score, score, champion_version, min_improvement, comparable)
    apply(decision, name, version)
    return version, decision
