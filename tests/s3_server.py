"""A real S3-API server for the storage tests: moto's own server application (moto.moto_server.werkzeug_app, as
`moto_server` runs it) on 127.0.0.1, checking every request's signature against the IAM keys it holds, as AWS,
MinIO and SeaweedFS do. kfts gets its credentials only as a pod gets them from a Kubernetes Secret: environment
variables (kfp-kubernetes use_secret_as_env).

One hook sits in front of moto, for the tests that stop a writer mid-upload: hold() stops the upload of the
second object under a prefix until the test has killed the writer, then fails that request unapplied, as a
connection cut by the writer's death leaves it; or, with apply=True, until the test has done what it does
meanwhile, then lets the request through, as a slow upload ends.
"""

from __future__ import annotations

import json
import os
import threading
import urllib.request
from dataclasses import dataclass, field

import boto3
import moto.settings
from moto.core.authorization import ActionAuthenticatorMixin
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server

BUCKET = "kfts"
REGION = "us-east-1"
S3_ENV = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "MINIO_ACCESS_KEY",
    "MINIO_SECRET_KEY",
    "AWS_PROFILE",
)


@dataclass
class _Hold:
    prefix: str  # a request path: /bucket/key-prefix
    apply: bool  # once released: let the request through (else fail it unapplied)
    first: str | None = None  # the first object written under it, let through
    reached: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)


class _Quiet(MotoRequestHandler):
    def log_request(self, *args) -> None:  # a line per request would bury the tests' own output
        pass


class S3Server:
    def __init__(self):
        self._hold: _Hold | None = None
        self._server = make_server(
            "127.0.0.1",
            0,
            self._app(DomainDispatcherApplication(create_backend_app)),
            threaded=True,
            request_handler=_Quiet,
        )
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        # moto's backends live in this process: start from an empty store, as a new server would
        urllib.request.urlopen(urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")).close()
        admin = dict(
            endpoint_url=self.url, region_name=REGION, aws_access_key_id="setup", aws_secret_access_key="setup"
        )
        iam = boto3.client("iam", **admin)
        # the three calls that create the key go unchecked; every request after them must be signed with it
        self._unchecked = moto.settings.INITIAL_NO_AUTH_ACTION_COUNT
        moto.settings.INITIAL_NO_AUTH_ACTION_COUNT = ActionAuthenticatorMixin.request_count + 3
        iam.create_user(UserName="kfts")
        iam.put_user_policy(
            UserName="kfts",
            PolicyName="s3",
            PolicyDocument=json.dumps(
                {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
            ),
        )
        key = iam.create_access_key(UserName="kfts")["AccessKey"]
        self.key_id, self.secret = key["AccessKeyId"], key["SecretAccessKey"]
        self.client = boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=self.key_id,
            aws_secret_access_key=self.secret,
        )
        self.client.create_bucket(Bucket=BUCKET)

    def env(self, **changes) -> dict:
        """This process's environment with the store's identity as a pod gets it from a Secret (and none other)."""
        env = {k: v for k, v in os.environ.items() if k not in S3_ENV}
        env.update(
            AWS_ACCESS_KEY_ID=self.key_id,
            AWS_SECRET_ACCESS_KEY=self.secret,
            AWS_ENDPOINT_URL=self.url,
            AWS_REGION=REGION,
        )
        env.update(changes)
        return {k: v for k, v in env.items() if v is not None}

    def keys(self, prefix: str = "") -> list[str]:
        """The objects under `prefix`, without the empty "folder/" markers pyarrow's create_dir leaves."""
        listed = self.client.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
        return sorted(o["Key"] for o in listed if not o["Key"].endswith("/"))

    def put(self, key: str, body: bytes) -> str:
        self.client.put_object(Bucket=BUCKET, Key=key, Body=body)
        return f"s3://{BUCKET}/{key}"

    def hold(self, prefix: str, *, apply: bool = False) -> _Hold:
        """Hold the first request writing the second object under s3://BUCKET/prefix (see the module docstring):
        wait for .reached, kill the writer (or do what happens meanwhile, with apply=True), set .released."""
        self._hold = _Hold(f"/{BUCKET}/{prefix}", apply)
        return self._hold

    def _app(self, moto_app):
        def app(environ, start_response):
            hold, path = self._hold, environ.get("PATH_INFO", "")
            writes = environ["REQUEST_METHOD"] in ("PUT", "POST") and not path.endswith("/")
            if hold and writes and path.startswith(hold.prefix) and (hold.first or path) != path:
                self._hold = None
                hold.reached.set()
                hold.released.wait(120)
                if hold.apply:
                    return moto_app(environ, start_response)
                start_response("503 Service Unavailable", [("Content-Length", "0")])
                return [b""]
            if hold and writes and path.startswith(hold.prefix):
                hold.first = path
            return moto_app(environ, start_response)

        return app

    def close(self) -> None:
        self._server.shutdown()
        moto.settings.INITIAL_NO_AUTH_ACTION_COUNT = self._unchecked
