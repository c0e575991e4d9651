"""The server's own files that its settings place outside its home (the TLS key, client-side encryption keys,
a SQLite metastore) are never read or written through the server, even inside a data root."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest

from emrml.config import Settings
from emrml.errors import AccessDeniedException
from emrml.service import files
from emrml.service.app import EmrML


def test_the_servers_own_files_in_a_data_root_are_refused(tmp_path: Path) -> None:
    # A data root holding them (/srv with /srv/tls/key.pem), and a user granted storage there: the storage
    # browser handed out the TLS private key, the key that encrypts every S3 object and the metastore with
    # every user's sealed secrets, and would have replaced them on upload.
    srv = tmp_path / "srv"
    (srv / "keys").mkdir(parents=True)
    tls_key, cse_key, old_key = srv / "keys" / "tls.pem", srv / "keys" / "cse.key", srv / "keys" / "old.key"
    tls_key.write_text("-----BEGIN PRIVATE KEY-----\nnot for users\n-----END PRIVATE KEY-----\n")
    cse_key.write_bytes(os.urandom(32))
    old_key.write_bytes(os.urandom(32))
    (srv / "keys" / "data.csv").write_text("x\n1\n")
    settings = Settings.load(
        environ={},
        home=tmp_path / "home",
        data_roots=[str(srv)],
        tls_key=str(tls_key),
        tls_client_ca=str(srv / "keys" / "clients.pem"),
        s3_cse_key=f"aes:{cse_key}",
        s3_cse_old_keys=f"aes:{old_key}",
        metastore_url=f"sqlite:///{srv}/meta.db",
    )
    app = EmrML(settings)
    try:
        access = app.access
        access.create_user("dora")
        access.create_group("everything")
        access.add_member("everything", "dora")
        grant = {"Effect": "Allow", "Action": ["storage:Read", "storage:Write"], "Resource": [f"{srv}/*"]}
        access.add_statement("everything", grant)
        caller = access.user_arn("dora")
        own = [
            tls_key,
            cse_key,
            old_key,
            srv / "meta.db",
            srv / "meta.db-wal",
            srv / "keys" / ".." / "meta.db",
        ]
        for path in own:
            with pytest.raises(AccessDeniedException, match="is one of the server's own files"):
                files.open_file(app, caller, str(path))
        for name in ("tls.pem", "clients.pem"):  # replaced, another CA would admit its client certificates
            with pytest.raises(AccessDeniedException, match="is one of the server's own files"):
                files.upload(app, caller, str(srv / "keys"), name, io.BytesIO(b"another key"))
        assert tls_key.read_text().startswith("-----BEGIN")
        with pytest.raises(AccessDeniedException, match="is one of the server's own files"):
            app.call(
                "CreateDataSourceFromS3",
                {"DataSourceId": "ds-key", "DataSpec": {"DataLocationS3": str(cse_key), "DataSchema": "{}"}},
                caller=caller,
                remote=True,
            )
        # A folder holding one is read by a job that checks each file it lists: it fails naming the key.
        schema = json.dumps({"attributes": [{"attributeName": "x", "attributeType": "NUMERIC"}]})
        request = {
            "DataSourceId": "ds-keys",
            "DataSpec": {"DataLocationS3": str(srv / "keys"), "DataSchema": schema},
        }
        app.call("CreateDataSourceFromS3", request, caller=caller, remote=True)
        app.jobs.run_pending()
        failed = app.call("GetDataSource", {"DataSourceId": "ds-keys"}, caller=caller)
        assert failed["Status"] == "FAILED" and "is one of the server's own files" in failed["Message"]
        # The other files of the root stay the user's.
        with files.open_file(app, caller, str(srv / "keys" / "data.csv")) as stream:
            assert stream.read() == b"x\n1\n"
    finally:
        app.close()
