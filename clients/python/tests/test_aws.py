"""The signed GetCallerIdentity request a job hands to sluice: the
standard-library signer and botocore's agree, and the request carries and
signs what sluice checks (the deployment's header, the date, the host)."""

from __future__ import annotations

import datetime
import os
import sys
import unittest
from unittest import mock

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

from sluice_client import aws  # noqa: E402

NOW = datetime.datetime(2026, 12, 3, 14, 15, 0, tzinfo=datetime.timezone.utc)
ROLE = aws.Credentials("ASIAEXAMPLEKEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "FwoGZXIvYXdzEXAMPLE//token=")
USER = aws.Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")


def signed_headers(headers: dict) -> list:
    auth = headers["Authorization"]
    return auth.split("SignedHeaders=")[1].split(",")[0].split(";")


class Signing(unittest.TestCase):
    def test_the_standard_library_signer_agrees_with_botocore(self) -> None:
        import botocore.auth  # type: ignore[import-untyped]
        for credentials in (ROLE, USER):
            for region, endpoint in (("eu-west-1", None), ("us-east-1", "http://127.0.0.1:5000/")):
                url = endpoint or aws.sts_endpoint(region)
                headers = {"Content-Type": aws.CONTENT_TYPE, aws.SERVER_ID_HEADER: "prod-eu"}
                ours = aws.sign_sigv4(url, headers, aws.BODY, credentials, region, NOW)
                with mock.patch.object(botocore.auth, "get_current_datetime", return_value=NOW.replace(tzinfo=None)):
                    theirs = aws._sign_botocore(url, headers, aws.BODY, credentials, region)
                self.assertIsNotNone(theirs)
                assert theirs is not None
                self.assertEqual(ours["Authorization"], theirs["Authorization"], (credentials, region))
                self.assertEqual(ours["X-Amz-Date"], "20261203T141500Z")

    def test_the_login_request_signs_what_sluice_checks(self) -> None:
        login = aws.signed_login("prod-eu", "eu-west-1", ROLE)
        self.assertEqual((login["method"], login["url"], login["body"]),
                         ("POST", "https://sts.eu-west-1.amazonaws.com/", "Action=GetCallerIdentity&Version=2011-06-15"))
        headers = login["headers"]
        self.assertEqual(headers[aws.SERVER_ID_HEADER], "prod-eu")
        self.assertEqual(headers["X-Amz-Security-Token"], ROLE.token)
        for name in ("host", "x-amz-date", "x-sluice-server-id", "x-amz-security-token"):
            self.assertIn(name, signed_headers(headers))
        # Signed just now, by this machine's clock.
        signed_at = datetime.datetime.strptime(headers["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(
            tzinfo=datetime.timezone.utc)
        age = datetime.datetime.now(datetime.timezone.utc) - signed_at
        self.assertLess(abs(age.total_seconds()), 60)

    def test_without_botocore_the_standard_library_signs(self) -> None:
        with mock.patch.object(aws, "_sign_botocore", return_value=None):
            login = aws.signed_login("prod-eu", "eu-west-1", USER)
        self.assertIn("x-sluice-server-id", signed_headers(login["headers"]))
        self.assertNotIn("X-Amz-Security-Token", login["headers"])

    def test_credentials_come_from_the_environment_or_are_missing_plainly(self) -> None:
        env = {"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "secret",
               "AWS_SESSION_TOKEN": "tok", "AWS_EC2_METADATA_DISABLED": "true",
               "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"}
        with mock.patch.dict(os.environ, env, clear=True):
            self.assertEqual(aws.credentials_from_environment(), aws.Credentials("AKIDEXAMPLE", "secret", "tok"))
            with mock.patch.object(aws, "_botocore", return_value=None):
                self.assertEqual(aws.credentials_from_environment(),
                                 aws.Credentials("AKIDEXAMPLE", "secret", "tok"))
        bare = {k: v for k, v in env.items() if not k.startswith("AWS_") or k in (
            "AWS_EC2_METADATA_DISABLED", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE")}
        with mock.patch.dict(os.environ, bare, clear=True), mock.patch.object(aws, "_botocore", return_value=None):
            with self.assertRaisesRegex(LookupError, "AWS_ACCESS_KEY_ID"):
                aws.credentials_from_environment()


if __name__ == "__main__":
    unittest.main()
