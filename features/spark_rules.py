"""The event rules (`features.event_rules`) in Spark SQL: the Spark engine's door. Each rule
becomes a column expression; a row's reason is the first rule it fails, as in every other door."""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from features.event_rules import (
    DEFAULTS,
    EPOCH_MILLIS_ABOVE,
    EVENT_RULES,
    EVENT_TYPE_SYNONYMS,
    MAX_QUANTITY,
    Check,
    Rule,
)


def validated(raw: DataFrame, latest_micros: int, max_future_seconds: float) -> DataFrame:
    """`raw` with each canonical column beside it as `_<name>` and the first failing rule of
    `features.event_rules` as `_reason` (null when the row is accepted)."""

    def text(name: str) -> Column:
        if name not in raw.columns:
            return F.lit(None).cast("string")
        trimmed = F.trim(F.col(name).cast("string"))
        return F.when(trimmed != "", trimmed)

    synonyms = F.create_map(*[F.lit(v) for pair in EVENT_TYPE_SYNONYMS.items() for v in pair])
    lowered = F.lower(text("event_type"))
    texts = {
        name: text(name)
        for name in ("customer_id", "item_id", "store_id", "event_id", "session_id")
    }
    texts["event_type"] = F.coalesce(synonyms[lowered], lowered)
    texts["channel"] = F.lower(text("channel"))
    stamp = _timestamp(raw.schema["timestamp"].dataType, F.col("timestamp"))
    micros = F.unix_micros(stamp)
    numbers = {name: _number(raw, name) for name in ("quantity", "price")}

    def fails(rule: Rule) -> Column:
        check, name = rule.check, rule.field
        if check is Check.TIME:
            return micros.isNull()
        if check is Check.NOT_FUTURE:
            return micros > latest_micros
        if check is Check.AFTER_1970:
            return micros < 0
        if name in numbers:
            value, unparsable = numbers[name]
            if check is Check.NUMBER:
                return unparsable
            if check is Check.WHOLE:
                number = F.coalesce(value, F.lit(float(DEFAULTS.get(name, 0.0))))  # type: ignore[arg-type]
                whole = (number == F.floor(number)) & (number >= rule.low) & (number <= rule.high)
                return ~unparsable & ~F.coalesce(whole, F.lit(False))
            if check is Check.AT_MOST:
                return value.isNotNull() & (value > rule.high)
            infinite = F.isnan(value) | (F.abs(value) == float("inf"))
            return value.isNotNull() & ((value < 0) | infinite)
        value = texts[name]
        if check is Check.REQUIRED:
            return value.isNull()
        if check is Check.PATTERN:
            return value.isNotNull() & ~value.rlike(rule.pattern_java)
        if check is Check.ONE_OF:
            return value.isNotNull() & ~value.isin(*rule.values)
        if check is Check.MAX_LENGTH:
            return value.isNotNull() & (F.length(value) > rule.high)
        raise AssertionError(f"no Spark check for {check}")

    reason = F.lit(None).cast("string")
    for rule in reversed(EVENT_RULES):  # the first rule a row fails names it
        if rule.field in raw.columns or rule.check is Check.REQUIRED:
            label = F.lit(rule.full_reason(max_future_seconds))
            reason = F.when(F.coalesce(fails(rule), F.lit(False)), label).otherwise(reason)
    quantity, _ = numbers["quantity"]
    quantity = F.least(
        F.greatest(F.coalesce(quantity, F.lit(1.0)), F.lit(0.0)), F.lit(float(MAX_QUANTITY))
    ).cast("int")
    return raw.select(
        "*",
        texts["customer_id"].alias("_customer_id"),
        texts["item_id"].alias("_item_id"),
        texts["event_type"].alias("_event_type"),
        texts["channel"].alias("_channel"),
        stamp.alias("_timestamp"),
        quantity.alias("_quantity"),
        numbers["price"][0].alias("_price"),
        texts["store_id"].alias("_store_id"),
        (
            F.col("session_id").cast("string")
            if "session_id" in raw.columns
            else F.lit(None).cast("string")
        ).alias("_session_id"),
        reason.alias("_reason"),
    )


def _number(raw: DataFrame, name: str) -> tuple[Column, Column]:
    """(the column as a double, null where absent or unparsable; whether it was unparsable)."""
    if name not in raw.columns:
        return F.lit(None).cast("double"), F.lit(False)
    if isinstance(raw.schema[name].dataType, T.NumericType):
        return F.col(name).cast("double"), F.lit(False)
    trimmed = F.trim(F.col(name).cast("string"))
    parsed = trimmed.try_cast("double")
    unparsable = trimmed.isNotNull() & (trimmed != "") & parsed.isNull()
    return parsed, unparsable


def _timestamp(kind: T.DataType, column: Column) -> Column:
    if isinstance(kind, T.TimestampType | T.TimestampNTZType | T.DateType):
        return column.cast("timestamp")
    if isinstance(kind, T.NumericType):
        return _from_epoch(column.cast("double"))
    text = F.regexp_replace(F.trim(column.cast("string")), r" ?UTC$", "Z")
    number = text.try_cast("double")
    return F.when(number.isNotNull(), _from_epoch(number)).otherwise(F.try_to_timestamp(text))


def _from_epoch(value: Column) -> Column:
    # above EPOCH_MILLIS_ABOVE: milliseconds (features.event_rules.epoch_seconds)
    micros = F.when(F.abs(value) > EPOCH_MILLIS_ABOVE, value * 1e3).otherwise(value * 1e6)
    return F.timestamp_micros(micros.cast("long"))
