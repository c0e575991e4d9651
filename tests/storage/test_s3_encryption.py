"""Encryption of what emrml writes to S3, against moto's S3 and KMS on loopback: server-side (SSE-S3,
SSE-KMS, a bucket policy refusing unencrypted PUTs) and client-side (CSE-Custom with AES or RSA keys,
CSE-KMS, a plug-in provider) in the Amazon S3 Encryption Client format, read back, rotated, and refused
with clear errors when the key or the object is wrong."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cse_helpers import head, read, use, write

from emrml.config import Settings
from emrml.errors import AccessDeniedException, InvalidInputException
from emrml.storage import locations
from emrml.storage.cse import AesKeyProvider, DecryptingReader, DecryptionError, Envelope
from emrml.storage.locations import list_files, read_text
from s3_server import S3

INTEROP = Path(__file__).with_name("s3ec_interop.py")
PLUGIN_KEY = os.urandom(32)


def plugin_provider(settings: Settings) -> AesKeyProvider:
    """The plug-in entry point the tests configure: ``plugin:test_s3_encryption:plugin_provider``."""
    return AesKeyProvider(PLUGIN_KEY)


@pytest.fixture
def kms_key(s3: S3) -> str:
    import boto3

    kms = boto3.client("kms", endpoint_url=s3.endpoint_url)
    return str(kms.create_key(Description="emrml tests")["KeyMetadata"]["KeyId"])


@pytest.fixture
def rsa_key_file(tmp_path: Path) -> Path:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path / "rsa.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return path


# --- server-side encryption -----------------------------------------------------------------------------


@pytest.mark.parametrize("size", [1000, 11 << 20])  # one PutObject; a multipart upload
def test_sse_s3_and_sse_kms_headers_on_every_object(s3: S3, kms_key: str, size: int) -> None:
    data = os.urandom(size)
    use(s3, s3_sse="AES256")
    write(s3.uri("sse-s3.bin"), data)
    assert head(s3, "sse-s3.bin")["ServerSideEncryption"] == "AES256"
    use(s3, s3_sse="aws:kms", s3_sse_kms_key_id=kms_key)
    write(s3.uri("sse-kms.bin"), data)
    described = head(s3, "sse-kms.bin")
    assert described["ServerSideEncryption"] == "aws:kms"
    assert kms_key in described["SSEKMSKeyId"]
    assert read(s3.uri("sse-kms.bin")) == data


def test_a_bucket_refusing_unencrypted_puts_takes_emrmls_sse_writes(s3: S3) -> None:
    policy = {
        "Statement": [
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:PutObject",
                "Resource": f"arn:aws:s3:::{s3.bucket}/*",
                "Condition": {"StringNotEquals": {"s3:x-amz-server-side-encryption": "AES256"}},
            }
        ]
    }
    s3.client.put_bucket_policy(Bucket=s3.bucket, Policy=json.dumps(policy))
    use(s3)
    with pytest.raises(AccessDeniedException, match="AccessDenied"):
        write(s3.uri("plain.bin"), b"x")
    use(s3, s3_sse="AES256")
    for key, size in [("small.bin", 10), ("large.bin", 11 << 20)]:
        write(s3.uri(key), os.urandom(size))
        assert head(s3, key)["ServerSideEncryption"] == "AES256"


# --- client-side encryption -----------------------------------------------------------------------------


def test_cse_round_trips_with_each_provider(
    s3: S3, kms_key: str, aes_key_file: Path, rsa_key_file: Path
) -> None:
    data = b"id,x\n" + b"".join(b"%d,%d\n" % (i, i * i) for i in range(700_000))  # ~9 MB: multipart
    for name, spec in [
        ("aes", f"aes:{aes_key_file}"),
        ("rsa", f"rsa:{rsa_key_file}"),
        ("kms", f"kms:{kms_key}"),
        ("plugin", "plugin:test_s3_encryption:plugin_provider"),
    ]:
        use(s3, s3_cse_key=spec, s3_sse="AES256")
        write(s3.uri(f"{name}/data.csv"), data)
        stored = s3.get(f"{name}/data.csv")
        assert len(stored) == len(data) + 16 and data[:1000] not in stored
        metadata = head(s3, f"{name}/data.csv")["Metadata"]
        assert metadata["x-amz-cek-alg"] == "AES/GCM/NoPadding" and metadata["x-amz-tag-len"] == "128"
        assert metadata["x-amz-wrap-alg"] == {
            "aes": "AES/GCM",
            "rsa": "RSA-OAEP-SHA1",
            "plugin": "AES/GCM",
        }.get(name, "kms+context")
        assert len(base64.b64decode(metadata["x-amz-iv"])) == 12 and metadata["x-amz-key-v2"]
        assert read(s3.uri(f"{name}/data.csv")) == data
        assert [ref.size for ref in list_files(s3.uri(f"{name}/data.csv"))] == [len(data)]
    assert json.loads(head(s3, "kms/data.csv")["Metadata"]["x-amz-matdesc"]) == {
        "aws:x-amz-cek-alg": "AES/GCM/NoPadding"
    }


def test_wrong_or_missing_key_fails_naming_the_object(s3: S3, tmp_path: Path, aes_key_file: Path) -> None:
    use(s3, s3_cse_key=f"aes:{aes_key_file}")
    write(s3.uri("secret.csv"), b"a,b\n1,2\n")
    other = tmp_path / "other.key"
    other.write_bytes(os.urandom(32))
    use(s3, s3_cse_key=f"aes:{other}")
    with pytest.raises(
        DecryptionError, match=r"cannot decrypt 's3://.*/secret.csv': none of the configured keys"
    ):
        read(s3.uri("secret.csv"))
    use(s3)
    with pytest.raises(DecryptionError, match=r"'s3://.*/secret.csv' is encrypted .* no key is configured"):
        read_text(s3.uri("secret.csv"))


def test_a_key_of_another_kind_or_a_public_key_says_which_key_reads_it(
    s3: S3, tmp_path: Path, aes_key_file: Path, rsa_key_file: Path
) -> None:
    """Both were "no configured key provider handles that" or "none of the configured keys opens its data
    key", which sent the user after a wrong key rather than the missing kind of key or the private half."""
    use(s3, s3_cse_key=f"rsa:{rsa_key_file}")
    write(s3.uri("rsa.csv"), b"a\n1\n")
    use(s3, s3_cse_key=f"aes:{aes_key_file}")
    with pytest.raises(DecryptionError) as caught:
        read(s3.uri("rsa.csv"))
    assert caught.value.message == (
        f"cannot decrypt '{s3.uri('rsa.csv')}': its data key is wrapped with RSA-OAEP-SHA1, which only a key "
        "configured as rsa:<PEM file> opens, and none is (settings s3_cse_key, s3_cse_old_keys)"
    )
    public = tmp_path / "public.pem"
    public.write_bytes(
        serialization.load_pem_private_key(rsa_key_file.read_bytes(), password=None)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    use(s3, s3_cse_key=f"rsa:{public}")
    with pytest.raises(DecryptionError) as caught:
        read(s3.uri("rsa.csv"))
    assert caught.value.message.endswith("; an RSA public key alone cannot read: configure the private key")


def test_a_kms_that_cannot_be_reached_is_not_called_a_wrong_key(s3: S3, kms_key: str) -> None:
    # An unreachable (or refusing) KMS was reported as "none of the configured keys opens its data key
    # (wrong key, or the envelope was altered)", sending the user after the key instead of the service.
    use(s3, s3_cse_key=f"kms:{kms_key}")
    write(s3.uri("k.csv"), b"a,b\n1,2\n")
    use(s3, s3_cse_key=f"kms:{kms_key}", kms_endpoint_url="http://127.0.0.1:9")
    with pytest.raises(DecryptionError) as caught:
        read(s3.uri("k.csv"))
    message = caught.value.message
    assert f"cannot decrypt '{s3.uri('k.csv')}': its data key could not be unwrapped" in message
    assert "KMS Decrypt: Could not connect to the endpoint URL" in message and "wrong key" not in message


def test_key_rotation_reads_old_objects_and_writes_with_the_new_key(
    s3: S3, tmp_path: Path, aes_key_file: Path, rsa_key_file: Path
) -> None:
    use(s3, s3_cse_key=f"aes:{aes_key_file}")
    write(s3.uri("old.csv"), b"old\n")
    use(s3, s3_cse_key=f"rsa:{rsa_key_file}", s3_cse_old_keys=f"aes:{aes_key_file}")
    assert read(s3.uri("old.csv")) == b"old\n"
    write(s3.uri("old.csv"), read(s3.uri("old.csv")))  # re-encrypt: the rotation recipe
    assert head(s3, "old.csv")["Metadata"]["x-amz-wrap-alg"] == "RSA-OAEP-SHA1"
    use(s3, s3_cse_key=f"rsa:{rsa_key_file}")
    assert read(s3.uri("old.csv")) == b"old\n"


def test_the_documented_rotation_leaves_nothing_wrapped_by_the_old_key(
    s3: S3, aes_key_file: Path, rsa_key_file: Path
) -> None:
    """docs/encryption.md's re-encryption walked ``list_files``, which leaves out ``.schema`` and hidden
    files: they stayed wrapped by the old key, unreadable once it was retired as the next step says."""
    use(s3, s3_cse_key=f"aes:{aes_key_file}")
    objects = {"data/a.csv": b"1,2\n", "data/a.csv.schema": b"{}", "data/part/.schema": b"{ }"}
    for key, body in objects.items():
        write(s3.uri(key), body)
    locations.make_folder(s3.uri("data/empty/"))
    rotated = use(s3, s3_cse_key=f"rsa:{rsa_key_file}", s3_cse_old_keys=f"aes:{aes_key_file}")
    text = (Path(__file__).parents[2] / "docs" / "encryption.md").read_text(encoding="utf-8")
    [block] = [
        block for block in re.findall(r"```python\n(.*?)```", text, re.DOTALL) if "atomic_write" in block
    ]
    # Run as written, with the test server's settings for the user's and its bucket for "bucket".
    block = textwrap.dedent(block).replace("Settings.load()", "rotated").replace("s3://bucket/", s3.uri())
    exec(compile(block, "docs/encryption.md", "exec"), {"rotated": rotated})
    use(s3, s3_cse_key=f"rsa:{rsa_key_file}")
    assert {key: read(s3.uri(key)) for key in objects} == objects
    assert head(s3, "data/part/.schema")["Metadata"]["x-amz-wrap-alg"] == "RSA-OAEP-SHA1"
    assert head(s3, "data/empty/")["ContentLength"] == 0


def test_the_documented_upload_of_encrypted_input_makes_a_datasource(
    s3: S3, aes_key_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/encryption.md's upload, run as written from a folder holding data/part-0.csv and part-1.csv:
    the objects are stored encrypted, and a datasource over the prefix with a local schema reads them."""
    from emrml.service.app import EmrML

    settings = use(s3, s3_cse_key=f"aes:{aes_key_file}")
    (tmp_path / "data").mkdir()
    parts = {f"part-{n}.csv": "".join(f"{n}{i},{i % 2}\n" for i in range(100)) for n in range(2)}
    for name, rows in parts.items():
        (tmp_path / "data" / name).write_text("a,b\n" + rows)
    monkeypatch.chdir(tmp_path)
    text = (Path(__file__).parents[2] / "docs" / "encryption.md").read_text(encoding="utf-8")
    [block] = [
        block for block in re.findall(r"```python\n(.*?)```", text, re.DOTALL) if "locations.copy" in block
    ]
    # Run as written, with the test server's settings for the user's and its bucket for "bucket".
    block = textwrap.dedent(block).replace("Settings.load()", "uploading").replace("s3://bucket/", s3.uri())
    exec(compile(block, "docs/encryption.md", "exec"), {"uploading": settings})
    for name, rows in parts.items():
        assert "x-amz-key-v2" in head(s3, f"in/{name}")["Metadata"]
        assert rows.encode() not in s3.get(f"in/{name}")
    schema = {
        "version": "1.0",
        "dataFileContainsHeader": True,
        "attributes": [
            {"attributeName": "a", "attributeType": "NUMERIC"},
            {"attributeName": "b", "attributeType": "BINARY"},
        ],
    }
    app = EmrML(settings)
    try:
        spec = {"DataLocationS3": s3.uri("in/"), "DataSchema": json.dumps(schema)}
        app.call("CreateDataSourceFromS3", {"DataSourceId": "ds-sealed", "DataSpec": spec})
        source = app.wait("DataSource", "ds-sealed")
    finally:
        app.close()
    assert source["Status"] == "COMPLETED", source.get("Message")
    assert source["NumberOfFiles"] == 2 and source["DataSizeInBytes"] == sum(
        (tmp_path / "data" / name).stat().st_size for name in parts
    )


def _tamper(s3: S3, key: str, body: bytes | None = None, drop: str | None = None) -> None:
    described = head(s3, key)
    metadata = {k: v for k, v in described["Metadata"].items() if k != drop}
    s3.client.put_object(
        Bucket=s3.bucket, Key=key, Body=body if body is not None else s3.get(key), Metadata=metadata
    )


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("tag", "authentication failed"),
        ("body", "authentication failed"),
        ("truncated", "authentication failed"),
        ("short", "shorter than its tag"),
        ("iv", "lacks x-amz-iv"),
        ("key", "lacks x-amz-key-v2"),
    ],
)
def test_damaged_objects_fail_clearly(s3: S3, aes_key_file: Path, damage: str, message: str) -> None:
    use(s3, s3_cse_key=f"aes:{aes_key_file}")
    data = b"x,y\n" * 100_000
    write(s3.uri("d.csv"), data)
    stored = bytearray(s3.get("d.csv"))
    if damage == "tag":
        stored[-1] ^= 1
        _tamper(s3, "d.csv", bytes(stored))
    elif damage == "body":
        stored[1000] ^= 1
        _tamper(s3, "d.csv", bytes(stored))
    elif damage == "truncated":
        _tamper(s3, "d.csv", bytes(stored[:-100]))
    elif damage == "short":
        _tamper(s3, "d.csv", bytes(stored[:10]))
    else:
        _tamper(s3, "d.csv", drop={"iv": "x-amz-iv", "key": "x-amz-key-v2"}[damage])
    with pytest.raises(DecryptionError, match=message) as caught:
        read(s3.uri("d.csv"))
    assert s3.uri("d.csv") in caught.value.message


@pytest.mark.parametrize("rows", [50_000, 600_000], ids=["read-whole", "streamed"])
def test_a_datasource_over_a_damaged_object_fails_and_writes_nothing(
    s3: S3, aes_key_file: Path, tmp_path: Path, rows: int
) -> None:
    """The tag is checked after the object's last byte, whether the object was read whole as it was opened
    (a small one) or streamed in ranges (a larger one): either way the failure names the request's member."""
    from emrml.service.app import EmrML
    from emrml.storage.locations import READ_AHEAD_OBJECT_BYTES

    settings = use(s3, s3_cse_key=f"aes:{aes_key_file}")
    write(s3.uri("in/data.csv"), b"a,b\n" + b"1,x\n" * rows)
    assert rows * 4 < READ_AHEAD_OBJECT_BYTES or rows * 4 > 2 * READ_AHEAD_OBJECT_BYTES
    stored = bytearray(s3.get("in/data.csv"))
    stored[-5] ^= 1
    _tamper(s3, "in/data.csv", bytes(stored))
    schema = {
        "version": "1.0",
        "dataFileContainsHeader": True,
        "attributes": [
            {"attributeName": "a", "attributeType": "NUMERIC"},
            {"attributeName": "b", "attributeType": "CATEGORICAL"},
        ],
    }
    app = EmrML(settings)
    try:
        app.call(
            "CreateDataSourceFromS3",
            {
                "DataSourceId": "ds-damaged",
                "DataSpec": {"DataLocationS3": s3.uri("in/"), "DataSchema": json.dumps(schema)},
                "ComputeStatistics": True,
            },
        )
        source = app.wait("DataSource", "ds-damaged")
    finally:
        app.close()
    assert source["Status"] == "FAILED" and "authentication failed" in source["Message"]
    assert f"DataSpec.DataLocationS3 '{s3.uri('in/data.csv')}'" in source["Message"], source["Message"]
    assert not list((settings.home / "datasources").glob("ds-damaged*"))


# --- interoperability with AWS's S3 Encryption Client ---------------------------------------------------


def _client(s3: S3, kms_key: str, action: str, key: str, path: Path) -> None:
    """AWS's amazon-s3-encryption-client-python, in an environment of its own (it pins cryptography<49)."""
    command = [
        "uv", "run", "--isolated", "--no-project", "--quiet",
        "--with", "amazon-s3-encryption-client-python>=4,<5",
        "python", str(INTEROP), s3.endpoint_url, s3.bucket, kms_key, action, key, str(path),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=os.environ.copy())
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.timeout(900)  # three runs of the client in its own environment, the first one installing it
def test_the_aws_encryption_client_reads_emrmls_objects_and_emrml_reads_its_v2_and_v3(
    s3: S3, kms_key: str, tmp_path: Path
) -> None:
    data = os.urandom(3 << 20)
    use(s3, s3_cse_key=f"kms:{kms_key}")
    write(s3.uri("by-emrml.bin"), data)
    _client(s3, kms_key, "read", "by-emrml.bin", tmp_path / "read.bin")
    assert (tmp_path / "read.bin").read_bytes() == data
    (tmp_path / "source.bin").write_bytes(data)
    for version in ("v2", "v3"):
        _client(s3, kms_key, f"write-{version}", f"by-client-{version}.bin", tmp_path / "source.bin")
        metadata = head(s3, f"by-client-{version}.bin")["Metadata"]
        assert ("x-amz-key-v2" if version == "v2" else "x-amz-3") in metadata
        assert read(s3.uri(f"by-client-{version}.bin")) == data
    stored = bytearray(s3.get("by-client-v3.bin"))
    metadata = head(s3, "by-client-v3.bin")["Metadata"]
    metadata["x-amz-d"] = base64.b64encode(os.urandom(28)).decode()
    s3.client.put_object(Bucket=s3.bucket, Key="by-client-v3.bin", Body=bytes(stored), Metadata=metadata)
    with pytest.raises(DecryptionError, match="key commitment does not match"):
        read(s3.uri("by-client-v3.bin"))


@pytest.fixture(autouse=True)
def _plugin_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    sys.modules.setdefault("test_s3_encryption", sys.modules[__name__])


def test_bad_key_settings_are_named(s3: S3, tmp_path: Path) -> None:
    short = tmp_path / "short.key"
    short.write_bytes(b"\x01" * 7)
    for spec, message in [
        ("des:/x", "its kind 'des' is not aes:<file>, rsa:<file>"),
        (f"aes:{tmp_path / 'none.key'}", "cannot read"),
        (f"aes:{short}", "neither a raw AES key nor one in base64"),
        ("plugin:no_such_module_here:factory", "cannot load plug-in"),
        # The factory's own failure, or an object that is no provider, were internal errors.
        ("plugin:json:loads", "plug-in json:loads failed: TypeError: "),
        ("plugin:builtins:str", "plug-in builtins:str returned a str, not a key provider (it lacks "),
        ("plugin:json", "plug-in 'json' is not <module>:<factory>"),
    ]:
        with pytest.raises(InvalidInputException, match=re.escape(message)) as caught:
            use(s3, s3_cse_key=spec)
        assert "s3_cse_key" in caught.value.message


def test_a_key_file_of_the_wrong_kind_is_named_not_a_traceback(
    s3: S3, tmp_path: Path, aes_key_file: Path, rsa_key_file: Path
) -> None:
    """An RSA setting given the AES key file (or a password-protected PEM) was a ValueError or TypeError
    out of cryptography, an internal error; base64 of a wrong length passed as a key."""
    locked = tmp_path / "locked.pem"
    locked.write_bytes(
        serialization.load_pem_private_key(rsa_key_file.read_bytes(), password=None).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    elliptic = tmp_path / "ec.pem"
    elliptic.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    short = tmp_path / "short-b64.key"
    short.write_bytes(base64.b64encode(os.urandom(20)) + b"\n")
    for setting, spec, message in [
        ("s3_cse_key", f"rsa:{aes_key_file}", "holds no RSA key in PEM"),
        ("s3_cse_key", f"rsa:{locked}", "holds a password-protected private key"),
        ("s3_cse_key", f"rsa:{elliptic}", "not an RSA key"),
        ("s3_cse_key", f"aes:{short}", "holds no AES key: one has 16, 24 or 32 bytes"),
        ("s3_cse_old_keys", f"rsa:{aes_key_file}", "holds no RSA key in PEM"),
    ]:
        keys = {"s3_cse_key": f"aes:{aes_key_file}", setting: spec}
        with pytest.raises(InvalidInputException) as caught:
            use(s3, **keys)
        assert caught.value.message.startswith(f"setting {setting}: {spec.partition(':')[2]} ")
        assert message in caught.value.message


def test_an_unknown_sse_setting_lists_the_choices(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputException) as refused:
        Settings.load(environ={"EMRML_S3_SSE": "kms"}, home=tmp_path)
    assert refused.value.message == "setting s3_sse must be one of AES256, aws:kms, or empty (got 'kms')"


def test_a_kms_key_without_sse_kms_is_refused_rather_than_left_out_of_writes(tmp_path: Path) -> None:
    """The key id was used only with s3_sse = "aws:kms": set alone (or with AES256), every object was
    written under the bucket's default encryption instead of the named KMS key, and nothing said so."""
    for sse in ("", "AES256"):
        with pytest.raises(InvalidInputException) as refused:
            Settings.load(environ={}, home=tmp_path, s3_sse=sse, s3_sse_kms_key_id="alias/data")
        assert refused.value.message.startswith(
            "setting s3_sse_kms_key_id names a KMS key, which only s3_sse"
        )
        assert f"(s3_sse is {sse or 'empty'!r})" in refused.value.message
    assert Settings.load(environ={}, home=tmp_path, s3_sse="aws:kms", s3_sse_kms_key_id="alias/data")


@pytest.mark.parametrize("buffer_size", [1, 15, 16, 17, 4096, 1 << 17])
def test_decrypting_reader_gives_the_plaintext_whatever_the_read_size(buffer_size: int) -> None:
    # Reads of more than 15 bytes decrypt straight into the caller's buffer; smaller ones go through a copy.
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    key, iv = os.urandom(32), os.urandom(12)
    plain = os.urandom(70_000 + 123)
    sealed = AESGCM(key).encrypt(iv, plain, None)
    envelope = Envelope("AES/GCM/NoPadding", "AES/GCM", b"", {}, iv)

    def read_all(body: bytes) -> bytes:
        reader = DecryptingReader(io.BytesIO(body), len(body), key, envelope, "s3://b/k")  # type: ignore[arg-type]
        target, parts = bytearray(buffer_size), []
        while size := reader.readinto(target):
            parts.append(bytes(target[:size]))
        return b"".join(parts)

    assert read_all(sealed) == plain
    altered = bytearray(sealed)
    altered[len(plain) // 2] ^= 1
    with pytest.raises(DecryptionError, match="authentication failed"):
        read_all(bytes(altered))


def test_an_aes_key_file_readable_as_raw_or_as_base64_is_refused_saying_how_to_mean_either(
    tmp_path: Path,
) -> None:
    """``openssl rand -base64 16 | tr -d '\\n'`` writes 24 characters: taken for a raw AES-192 key of them,
    objects were encrypted with a key no other client given the real one could read; ``openssl rand -hex
    16`` writes 32 hex digits, read as the base64 of a 24-byte key."""
    from emrml.storage.cse_settings import provider_from_spec

    settings = Settings.load(environ={}, home=tmp_path / "home")
    key_file = tmp_path / "text.key"
    for size in (16, 24):
        key = os.urandom(size)
        key_file.write_bytes(base64.b64encode(key))
        with pytest.raises(InvalidInputException) as refused:
            provider_from_spec(f"aes:{key_file}", settings)
        characters = len(base64.b64encode(key))
        assert refused.value.message == (
            f"setting s3_cse_key: {key_file} holds {characters} characters that are either a raw "
            f"{characters}-byte AES key or the base64 of a {size}-byte one: end the file with a line end "
            "to read it as base64, or write the base64 of its bytes in it, and a line end, to read them as a "
            "raw key"
        )
        assert base64.b64encode(key).decode() not in refused.value.message  # no key material told
        # Each reading, as the message says to write it, is the key it means.
        key_file.write_bytes(base64.b64encode(key) + b"\n")
        assert provider_from_spec(f"aes:{key_file}", settings).key_id == AesKeyProvider(key).key_id
        text = base64.b64encode(key)
        key_file.write_bytes(base64.b64encode(text) + b"\n")
        assert provider_from_spec(f"aes:{key_file}", settings).key_id == AesKeyProvider(text).key_id
    # A key in hex, whose digits are base64 text too: 32 of them read as a 24-byte key not the one meant.
    for size, end in ((16, b"\n"), (16, b""), (32, b"\n")):
        key_file.write_bytes(os.urandom(size).hex().encode() + end)
        with pytest.raises(InvalidInputException) as refused:
            provider_from_spec(f"aes:{key_file}", settings)
        assert refused.value.message == (
            f"setting s3_cse_key: {key_file} holds {2 * size} hexadecimal digits: an AES key is read raw or "
            "in base64, not in hex (convert it: xxd -r -p FILE | base64)"
        )
    # A raw key of bytes that are not base64 text reads as it is.
    raw = b"\xff" * 32
    key_file.write_bytes(raw)
    assert provider_from_spec(f"aes:{key_file}", settings).key_id == AesKeyProvider(raw).key_id


def test_a_key_setting_given_key_material_does_not_show_it(tmp_path: Path) -> None:
    """``s3_cse_key`` set to the key itself (its base64, a PEM) was echoed whole in the error, and so in
    every log that kept it."""
    from emrml.storage.cse_settings import provider_from_spec

    settings = Settings.load(environ={}, home=tmp_path / "home")
    material = base64.b64encode(os.urandom(32)).decode()
    pem = "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\n" + material
    for spec in (material, pem, f"{material}:{material}"):
        with pytest.raises(InvalidInputException) as refused:
            provider_from_spec(spec, settings)
        assert refused.value.message == (
            "setting s3_cse_key: its value (not shown) is not aes:<file>, rsa:<file>, kms:<key id> or "
            "plugin:<module>:<factory>"
        )
    # Given after its kind, as if it were the key's file.
    for spec in (f"aes:{material}", f"rsa:{pem}"):
        with pytest.raises(InvalidInputException) as refused:
            provider_from_spec(spec, settings)
        assert refused.value.message == (
            "setting s3_cse_key: cannot read its file (not shown: it reads as key material): No such file or "
            "directory"
        )
    with pytest.raises(InvalidInputException, match=r"cannot read /no/such/k\.key: No such file"):
        provider_from_spec("aes:/no/such/k.key", settings)
