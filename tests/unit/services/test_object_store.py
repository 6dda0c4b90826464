"""services/object_store.py: the offline stacks' S3 server gets its credentials from the clients' secret files."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.object_store import identities, read_credentials, weed_command
from shared.settings import Settings


def test_credentials_come_from_the_two_files(tmp_path: Path) -> None:
    (tmp_path / "ak").write_text("AKID\n")
    (tmp_path / "sk").write_text("s3cret\n")
    settings = Settings(s3_access_key_file=str(tmp_path / "ak"), s3_secret_key_file=str(tmp_path / "sk"))
    assert read_credentials(settings) == ("AKID", "s3cret")
    doc = identities("AKID", "s3cret")
    assert doc["identities"][0]["credentials"] == [{"accessKey": "AKID", "secretKey": "s3cret"}]


@pytest.mark.parametrize("access, secret, message", [
    ("", "sk", "EMPATHY_S3_ACCESS_KEY_FILE is not set"),
    ("ak", "missing", "EMPATHY_S3_SECRET_KEY_FILE="),
    ("empty", "sk", "is empty"),
])
def test_a_missing_credential_names_its_variable(tmp_path: Path, access: str, secret: str, message: str) -> None:
    (tmp_path / "ak").write_text("AKID")
    (tmp_path / "sk").write_text("s3cret")
    (tmp_path / "empty").write_text("\n")
    settings = Settings(s3_access_key_file=str(tmp_path / access) if access else "",
                        s3_secret_key_file=str(tmp_path / secret))
    with pytest.raises(SystemExit, match=message):
        read_credentials(settings)


def test_weed_serves_s3_with_the_bucket_and_no_telemetry() -> None:
    command = weed_command("/bin/weed", data_dir=Path("/data/s3"), config=Path("/tmp/id.json"), port=8333,
                           bucket="empathy")
    assert command[:2] == ["/bin/weed", "mini"]
    assert {"-s3.port=8333", "-bucket=empathy", "-s3.config=/tmp/id.json", "-master.telemetry=false"} <= set(command)
