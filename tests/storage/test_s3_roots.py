"""``s3://`` roots without an endpoint: what a root names, and that it is never taken for a local folder."""

from __future__ import annotations

import pytest

from storage.backend import BadRoot, is_object_root, open_store
from storage.s3_store import parse_root


def test_a_root_names_a_bucket_and_a_prefix() -> None:
    assert parse_root("s3://backups") == ("backups", "")
    assert parse_root("s3://backups/") == ("backups", "")
    assert parse_root("s3://my.backups-1/site/a/") == ("my.backups-1", "site/a")


@pytest.mark.parametrize("bad", ["s3://", "s3://ab", "s3://Backups", "s3://back_ups", "s3://-backups",
                                 "s3://backups/na me", "s3://backups/a/../b"])
def test_junk_is_one_line_bad_root_before_any_request(bad: str) -> None:
    with pytest.raises(BadRoot) as raised:
        open_store(bad)
    message = str(raised.value)
    assert "\n" not in message and ("s3://BUCKET" in message or "prefix" in message), message


def test_an_s3_root_is_no_local_folder() -> None:
    from portal.config import VAR, var_folder

    assert is_object_root("s3://backups/x") and is_object_root("rados:backups") and not is_object_root("/srv/b")
    assert var_folder({"STORAGE_ROOT": "s3://backups/site"}) == VAR
