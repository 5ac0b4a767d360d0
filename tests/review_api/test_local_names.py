"""review_api.local against AWS: the history table it finds from --table alone is the one the stack names."""

from __future__ import annotations

from review_api.local import default_history_table
from stacks.review import history_table


def test_the_history_table_defaults_to_the_stacks_name_for_the_labels_tables_prefix() -> None:
    assert default_history_table("photo-labeler-labels") == history_table.table_name("photo-labeler")
    assert default_history_table("p-labels") == "p-review-history"
    # A table named otherwise: its whole name is taken as the prefix.
    assert default_history_table("my-table") == "my-table-review-history"
