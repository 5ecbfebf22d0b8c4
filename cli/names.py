"""Names the parser offers before anything heavy is imported: `omnirec --help` and argument
parsing import no layer below (numpy, pyarrow, the models); each subcommand imports what it uses
when it runs. `tests/test_cli.py` keeps these equal to the registries they name."""

from __future__ import annotations

# models.MODEL_KINDS
MODEL_NAMES: tuple[str, ...] = (
    "als",
    "bpr",
    "buy_again",
    "ease",
    "itemknn",
    "popularity",
    "repeat",
    "repeat_ranked",
)
# features.importers.IMPORTERS
IMPORT_FORMATS: tuple[str, ...] = (
    "completejourney",
    "hm",
    "instacart",
    "movielens",
    "rees46",
    "retailrocket",
    "taobao",
)
