"""Feature suggestions: domain features proposed from a schema and a short business context.

:func:`suggest_views` is rule-based and offline: it finds the entity key, the event time, the
categorical and numeric columns, reads keywords from the context (churn, fraud, spend, ...) and
proposes time-windowed counts, per-category counts (given the category values), numeric
aggregates, recency, trends between windows, ratios and categorical encodings (distinct counts,
last value) as feature views. Every suggestion is checked against the schema before it is
returned, so the YAML from :func:`~raypipe.features.spec.views_to_yaml` can be pasted as is.

:func:`suggest_views_llm` sends the same prompt to an OpenAI-compatible ``/chat/completions``
endpoint given by URL (standard library HTTP only; nothing is sent unless called) and keeps the
views of the answer that parse and check.
"""

from __future__ import annotations

import json
import logging
import re
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence

import polars as pl

from raypipe.errors import RaypipeError, SpecError
from raypipe.features.asof import compile_view
from raypipe.features.candidates import slug
from raypipe.features.spec import parse_views, views_to_yaml
from raypipe.features.views import Aggregate, Derived, Feature, FeatureView
from raypipe.spec.bounded_yaml import parse_bounded_yaml

__all__ = ["build_prompt", "suggest_views", "suggest_views_llm"]

logger = logging.getLogger(__name__)

_KEY_HINTS = ("player_id", "user_id", "customer_id", "account_id", "device_id", "entity_id", "id")
_TYPE_HINTS = ("event_type", "type", "event", "action", "category", "kind", "name")
_THEMES: Mapping[str, tuple[str, ...]] = {
    "churn": ("churn", "retention", "retain", "leave", "lapse", "inactive", "engagement"),
    "fraud": ("fraud", "chargeback", "abuse", "cheat", "bot", "refund", "risk"),
    "spend": ("spend", "purchase", "revenue", "payer", "monetization", "ltv", "iap", "whale"),
}


def _themes(context: str) -> set[str]:
    words = set(re.findall(r"[a-z]+", context.lower()))
    return {theme for theme, hints in _THEMES.items() if any(h in words for h in hints)}


def _pick_key(schema: Mapping[str, pl.DataType]) -> str | None:
    for hint in _KEY_HINTS:
        if hint in schema and (schema[hint].is_integer() or schema[hint] == pl.String):
            return hint
    return next((c for c in schema if c.endswith("_id")), None)


def suggest_views(
    schema: Mapping[str, pl.DataType],
    context: str = "",
    *,
    category_values: Mapping[str, Sequence[str]] | None = None,
    entity: str | None = None,
    timestamp: str | None = None,
) -> list[FeatureView]:
    """Rule-based feature views for a dataset with ``schema`` and a business ``context``.

    Parameters
    ----------
    schema
        Column name -> polars dtype (e.g. a dataset's ``collect_schema()``).
    context
        A sentence or two: what is predicted and for whom ("churn of mobile game players").
    category_values
        Known values of categorical columns (e.g. the most frequent event types), for per-value
        counts; without them only encodings are proposed for categoricals.
    entity, timestamp
        Override the detected key and event-time columns.

    Raises
    ------
    SpecError
        No entity key or no datetime column can be found.
    """
    key = entity or _pick_key(schema)
    stamps = [c for c, t in schema.items() if isinstance(t, pl.Datetime)]
    stamp = timestamp or (stamps[0] if stamps else None)
    if key is None or stamp is None:
        raise SpecError(
            [
                f"cannot find the {'entity key' if key is None else 'event time'} "
                f"column (columns: {', '.join(f'`{c}`' for c in schema)})"
            ],
            hint="pass `entity=` and `timestamp=` (CLI: --entity, --timestamp)",
        )
    themes = _themes(context)
    skip = {key, stamp}
    categorical = [
        c for c, t in schema.items() if c not in skip and t in (pl.String, pl.Categorical)
    ]
    numeric = [c for c, t in schema.items() if c not in skip and t.is_float()]
    dates = [c for c, t in schema.items() if c not in skip and t == pl.Date]
    short = ("1h", "1d", "7d") if "fraud" in themes else ("1d", "7d", "30d")
    views = [_activity(key, stamp, short, dates, themes)]
    values = dict(category_values or {})
    type_column = next((c for hint in _TYPE_HINTS for c in categorical if c == hint), None)
    if type_column and values.get(type_column):
        views.append(_per_type(key, stamp, type_column, values[type_column], short))
    if numeric:
        views.append(_numeric(key, stamp, numeric, short, themes))
    others = [c for c in categorical if c != type_column]
    if others:
        views.append(_encodings(key, stamp, others, short, themes))
    checked = []
    for view in views:
        try:
            compile_view(view, schema)
        except SpecError as exc:  # a rule produced something the schema rejects: skip it
            logger.warning("suggestion `%s` dropped: %s", view.name, exc)
            continue
        checked.append(view)
    return checked


def _activity(
    key: str, stamp: str, windows: tuple[str, ...], dates: list[str], themes: set[str]
) -> FeatureView:
    features: list[Feature] = [Aggregate(f"events_{w}", "count", window=w) for w in windows]
    features.append(Aggregate("days_since_last_event", "time_since_last"))
    if dates:
        features.append(
            Aggregate(
                f"active_days_{windows[-1]}", "count_distinct", column=dates[0], window=windows[-1]
            )
        )
    short, long = windows[1], windows[-1]
    features.append(
        Derived(
            f"event_trend_{short}_vs_{long}",
            f"safe_div(events_{short} * {_days(long)}, events_{long} * {_days(short)})",
        )
    )
    why = "Recency, frequency and trend of activity"
    if "churn" in themes:
        why += " (falling activity and long gaps are the strongest churn signals)"
    return FeatureView("suggested_activity", (key,), stamp, tuple(features), description=why)


def _per_type(
    key: str, stamp: str, column: str, values: Sequence[str], windows: tuple[str, ...]
) -> FeatureView:
    features: list[Feature] = []
    for value in values:
        where = f'{column} == "{value}"'
        name = slug(value)
        features.append(Aggregate(f"{name}_{windows[1]}", "count", window=windows[1], where=where))
        features.append(
            Aggregate(f"{name}_{windows[-1]}", "count", window=windows[-1], where=where)
        )
        features.append(Aggregate(f"days_since_{name}", "time_since_last", where=where))
    features.append(
        Aggregate(
            f"distinct_{slug(column)}_{windows[-1]}",
            "count_distinct",
            column=column,
            window=windows[-1],
        )
    )
    return FeatureView(
        "suggested_by_type",
        (key,),
        stamp,
        tuple(features),
        description=f"Counts and recency per `{column}` value",
    )


def _numeric(
    key: str, stamp: str, columns: list[str], windows: tuple[str, ...], themes: set[str]
) -> FeatureView:
    features: list[Feature] = []
    for column in columns:
        name = slug(column)
        for window in (windows[1], windows[-1]):
            features.append(Aggregate(f"{name}_sum_{window}", "sum", column=column, window=window))
        features.append(
            Aggregate(f"{name}_mean_{windows[-1]}", "mean", column=column, window=windows[-1])
        )
        features.append(
            Aggregate(f"{name}_max_{windows[-1]}", "max", column=column, window=windows[-1])
        )
        if "fraud" in themes:
            features.append(
                Aggregate(f"{name}_max_{windows[0]}", "max", column=column, window=windows[0])
            )
            features.append(
                Aggregate(f"{name}_std_{windows[-1]}", "std", column=column, window=windows[-1])
            )
        features.append(
            Derived(
                f"{name}_share_{windows[1]}",
                f"safe_div({name}_sum_{windows[1]}, {name}_sum_{windows[-1]})",
            )
        )
    why = "Sums, means and peaks of numeric values"
    if "spend" in themes:
        why += " (spend level and its recent share)"
    return FeatureView("suggested_numeric", (key,), stamp, tuple(features), description=why)


def _encodings(
    key: str, stamp: str, columns: list[str], windows: tuple[str, ...], themes: set[str]
) -> FeatureView:
    features: list[Feature] = []
    for column in columns:
        name = slug(column)
        features.append(Aggregate(f"last_{name}", "last", column=column))
        features.append(
            Aggregate(
                f"distinct_{name}_{windows[-1]}",
                "count_distinct",
                column=column,
                window=windows[-1],
            )
        )
    why = "Categorical encodings: the latest value and how many distinct values"
    if "fraud" in themes:
        why += " (many countries or currencies in a short time is a fraud signal)"
    return FeatureView("suggested_categorical", (key,), stamp, tuple(features), description=why)


def _days(window: str) -> str:
    from raypipe.features.views import parse_window

    delta = parse_window(window)
    return "1" if delta is None else f"{delta.total_seconds() / 86_400:g}"


def build_prompt(
    schema: Mapping[str, pl.DataType], context: str, example: Sequence[FeatureView] = ()
) -> str:
    """The prompt for a language model: schema, context, the YAML format and an example."""
    columns = "\n".join(f"- {name}: {dtype}" for name, dtype in schema.items())
    sample = views_to_yaml(example) if example else ""
    return (
        "You propose features for a machine-learning model as raypipe feature-view YAML.\n"
        f"Business context: {context or '(none given)'}\n"
        f"Columns of the event table:\n{columns}\n"
        "Aggregations: count, sum, mean, min, max, std, count_distinct, last, time_since_last; "
        "windows like 1d, 7d, 30d or lifetime; `where` and `expr` use Python-like expressions "
        "over columns (aggregates) or earlier features (derived), with safe_div, log1p, abs.\n"
        "Answer with one YAML document with a top-level `views:` list and nothing else.\n"
        + (f"Example:\n{sample}" if sample else "")
    )


def suggest_views_llm(
    schema: Mapping[str, pl.DataType],
    context: str,
    *,
    url: str,
    model: str = "gpt-4o-mini",
    api_key: str | None = None,
    timeout: float = 60.0,
) -> list[FeatureView]:
    """Ask an OpenAI-compatible endpoint (``{url}/chat/completions``) for feature views.

    Views that do not parse or do not check against ``schema`` are dropped with a warning.

    Raises
    ------
    RaypipeError
        The endpoint cannot be reached or answers with no usable content.
    """
    prompt = build_prompt(schema, context, suggest_views(schema, context)[:1])
    body = json.dumps(
        {"model": model, "temperature": 0, "messages": [{"role": "user", "content": prompt}]}
    ).encode()
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    endpoint = url.rstrip("/") + "/chat/completions"
    request = urllib.request.Request(endpoint, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            answer = json.loads(response.read().decode())
        content = answer["choices"][0]["message"]["content"]
    except (urllib.error.URLError, TimeoutError, ValueError, KeyError, IndexError) as exc:
        raise RaypipeError(
            f"the suggestion endpoint `{endpoint}` gave no usable answer: {exc}",
            hint="check --llm-url and the model name, or use the offline rules (omit --llm-url)",
        ) from exc
    return _views_from_text(content, schema)


def _views_from_text(content: str, schema: Mapping[str, pl.DataType]) -> list[FeatureView]:
    fenced = re.search(r"```(?:ya?ml)?\s*\n(.*?)```", content, re.S)
    text = fenced.group(1) if fenced else content
    try:
        data = parse_bounded_yaml(text, "the suggestion endpoint's answer")
    except SpecError as exc:
        raise RaypipeError(
            f"the suggestion endpoint answered with invalid or oversized YAML: {exc.problems[0]}",
            hint="try again or use the offline rules",
        ) from exc
    items = data.get("views", []) if isinstance(data, dict) else data or []
    views = []
    for item in items if isinstance(items, list) else []:
        try:
            (view,) = parse_views(item)
            compile_view(view, schema)
        except (SpecError, ValueError) as exc:
            logger.warning("suggested view dropped: %s", exc)
            continue
        views.append(view)
    return views
