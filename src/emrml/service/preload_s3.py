"""What the job fork server imports when jobs may use S3: boto3 with the S3 client's lazily loaded code,
so that a worker's first S3 client takes tens of milliseconds instead of half a second."""

from emrml.storage.s3 import S3Store

S3Store().warm_up()
