"""Identity stitching: any alias (loyalty card, account, hashed e-mail, phone, device) to one
customer."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from features import arrowkit
from features.schema import ID_PATTERN_RE2
from omnirec.errors import DataError


@dataclass(frozen=True)
class IdentityMap:
    """alias id -> canonical customer id, with each alias's type kept for lookups by type."""

    table: pa.Table  # alias_type, alias_id, customer_id (plain strings), one row per alias

    @classmethod
    def empty(cls) -> IdentityMap:
        return cls(
            pa.table(
                {
                    "alias_type": pa.array([], pa.string()),
                    "alias_id": pa.array([], pa.string()),
                    "customer_id": pa.array([], pa.string()),
                }
            )
        )

    @classmethod
    def from_table(cls, raw: pa.Table, source: str = "<identity>") -> IdentityMap:
        """Validate an identity table; an alias pointing at two customers is a DataError."""
        for name in ("alias_type", "alias_id", "customer_id"):
            if name not in raw.column_names:
                raise DataError(source, f"missing required column {name}")
        table = pa.table(
            {name: _plain(raw.column(name)) for name in ("alias_type", "alias_id", "customer_id")}
        )
        for name in ("alias_id", "customer_id"):
            bad = pc.invert(
                pc.fill_null(pc.match_substring_regex(table[name], ID_PATTERN_RE2), False)
            )
            if pc.any(bad).as_py():
                row = int(np.flatnonzero(np.asarray(bad))[0]) + 1
                raise DataError(source, f"row {row}: {name} missing or has invalid characters")
        table = table.combine_chunks()
        aliases = arrowkit.as_dictionary(table["alias_id"])
        alias_codes = arrowkit.codes(aliases).astype(np.int64)
        customer_codes = arrowkit.codes(arrowkit.as_dictionary(table["customer_id"])).astype(
            np.int64
        )
        width = int(customer_codes.max(initial=0)) + 1
        pairs, first_row = np.unique(alias_codes * width + customer_codes, return_index=True)
        per_alias = np.bincount(pairs // width)
        if (per_alias > 1).any():
            example = aliases.dictionary[int(np.flatnonzero(per_alias > 1)[0])].as_py()
            raise DataError(
                source,
                f"{int((per_alias > 1).sum())} alias id(s) map to more than one customer, e.g. "
                f"{example!r}",
            )
        table = table.take(pa.array(np.sort(first_row)))  # one row per (alias, customer)
        return cls(table.combine_chunks())

    def resolve(self, ids: pa.DictionaryArray) -> pa.DictionaryArray:
        """Replace alias ids by their customer id; ids that are no alias stay as they are."""
        if self.table.num_rows == 0:
            return ids
        dictionary = ids.dictionary
        position = pc.index_in(dictionary, value_set=self.table["alias_id"].combine_chunks())
        mapped = pc.take(self.table["customer_id"].combine_chunks(), position)
        resolved = pc.coalesce(mapped, dictionary)
        encoded = pc.dictionary_encode(resolved)
        remap = np.asarray(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.int32)
        row_codes = arrowkit.codes(ids)
        new_codes = np.append(remap, -1)[row_codes]
        mask = new_codes < 0 if ids.null_count else None
        return pa.DictionaryArray.from_arrays(
            pa.array(new_codes, pa.int32(), mask=mask), encoded.dictionary
        )

    def resolve_one(self, alias: str) -> str:
        """The customer id for one alias (or the alias itself when it is not one)."""
        match = self.table.filter(pc.equal(self.table["alias_id"], alias))
        return str(match["customer_id"][0].as_py()) if match.num_rows else alias

    def aliases_of(self, customer_id: str) -> list[tuple[str, str]]:
        """All (alias_type, alias_id) of a customer."""
        match = self.table.filter(pc.equal(self.table["customer_id"], customer_id))
        return list(
            zip(match["alias_type"].to_pylist(), match["alias_id"].to_pylist(), strict=True)
        )


def _plain(column: pa.ChunkedArray) -> pa.Array:
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    return pc.utf8_trim_whitespace(column.cast(pa.string()).combine_chunks())


def stitch(events: pa.Table, identities: IdentityMap) -> pa.Table:
    """Events with customer_id resolved through the identity map."""
    customer = identities.resolve(arrowkit.as_dictionary(events.column("customer_id")))
    index = events.column_names.index("customer_id")
    return events.set_column(index, "customer_id", customer)
