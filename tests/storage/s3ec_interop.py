"""Runs in an isolated environment with AWS's amazon-s3-encryption-client-python (which pins its own
cryptography): reads or writes one object through that client against the test S3 server.

    python s3ec_interop.py ENDPOINT BUCKET KMS_KEY_ID read KEY OUT_FILE
    python s3ec_interop.py ENDPOINT BUCKET KMS_KEY_ID write-v2|write-v3 KEY IN_FILE
"""

from __future__ import annotations

import sys

import boto3
from s3_encryption import CommitmentPolicy, S3EncryptionClient, S3EncryptionClientConfig
from s3_encryption.materials.kms_keyring import KmsKeyring
from s3_encryption.materials.materials import AlgorithmSuite


def main(endpoint: str, bucket: str, kms_key_id: str, action: str, key: str, path: str) -> None:
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    kms = boto3.client("kms", endpoint_url=endpoint, region_name="us-east-1")
    keyring = KmsKeyring(kms, kms_key_id)
    if action == "write-v2":
        config = S3EncryptionClientConfig(
            keyring=keyring,
            encryption_algorithm=AlgorithmSuite.ALG_AES_256_GCM_IV12_TAG16_NO_KDF,
            commitment_policy=CommitmentPolicy.FORBID_ENCRYPT_ALLOW_DECRYPT,
        )
    elif action == "write-v3":
        config = S3EncryptionClientConfig(keyring=keyring)
    else:
        config = S3EncryptionClientConfig(
            keyring=keyring, commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_ALLOW_DECRYPT
        )
    client = S3EncryptionClient(s3, config)
    if action == "read":
        with open(path, "wb") as out:
            out.write(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    else:
        with open(path, "rb") as source:
            client.put_object(Bucket=bucket, Key=key, Body=source.read())


if __name__ == "__main__":
    main(*sys.argv[1:])
