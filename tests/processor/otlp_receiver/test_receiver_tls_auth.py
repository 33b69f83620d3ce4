"""TLS, mutual TLS and bearer-token authentication of the ``otlp`` receiver, with the official
SDK OTLP exporters as clients over real sockets.

A CA, a server certificate (for 127.0.0.1) and client certificates are made at test time with
``cryptography``; a second, untrusted CA signs a client certificate the server must refuse.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
    OTLPMetricExporter as GrpcMetricExporter,
)
from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
    OTLPMetricExporter as HttpMetricExporter,
)
from opentelemetry.proto.collector.metrics.v1 import (
    metrics_service_pb2,
    metrics_service_pb2_grpc,
)
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Metric,
    MetricExportResult,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from driftline import semconv
from driftline.exporters.file.exporter import read_metrics
from driftline.processor.component import ComponentError, Host
from driftline.processor.component.auth import AuthConfig
from driftline.processor.extensions.bearertokenauth import BearerTokenAuth, BearerTokenAuthConfig
from driftline.processor.otlp_receiver.config import (
    GrpcConfig,
    HttpConfig,
    OtlpReceiverConfig,
    ProtocolsConfig,
)
from driftline.processor.otlp_receiver.receiver import OtlpReceiver
from driftline.processor.service.config import ConfigError, parse_config
from driftline.processor.service.pipeline import build
from tests._collector import PROTOCOL_GRPC, PROTOCOL_HTTP, running_collector
from tests._pki import Pki, make_pki

LOOPBACK = "127.0.0.1"
EXPORT_TIMEOUT_S = 5.0
# Refused exports end when the SDK's retry budget (its timeout) is spent; keep it short.
REFUSED_EXPORT_TIMEOUT_S = 1.0
TOKEN = "s3cret-token-0123456789"
AUTH_HEADERS = {"authorization": f"Bearer {TOKEN}"}


# --- certificates -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(autouse=True)
def _sdk_http_exporter_uses_its_certificate_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """requests lets ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` override a session's ``verify``
    (the SDK HTTP exporter's ``certificate_file``); without them it trusts our CA as asked."""
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)


def tls_node(pki: Pki, mutual: bool) -> dict[str, str]:
    node = {"cert_file": str(pki.server_cert), "key_file": str(pki.server_key)}
    if mutual:
        node["client_ca_file"] = str(pki.ca)
    return node


# --- the receiver in process --------------------------------------------------------------


class Recorder:
    """A metrics consumer that keeps each batch's metric names."""

    signals = ("metrics",)

    def __init__(self) -> None:
        self.names: list[list[str]] = []

    def consume_metrics(self, batch: Sequence[Any]) -> None:
        self.names.append([m.name for rm in batch for sm in rm.scope_metrics
                           for m in sm.metrics])


def receiver_config(protocols: dict[str, Any]) -> OtlpReceiverConfig:
    """The receiver's config as the loader builds it from YAML ``protocols`` (with a
    ``bearertokenauth`` extension enabled, for receivers that name it)."""
    config = parse_config({
        "receivers": {"otlp": {"protocols": protocols}},
        "exporters": {"file": {"path": os.devnull}},
        "extensions": {"bearertokenauth": {"token": TOKEN}},
        "service": {"extensions": ["bearertokenauth"],
                    "pipelines": {"metrics": {"receivers": ["otlp"], "exporters": ["file"]}}},
    }, environ={})
    [receiver] = config.receivers.values()
    return receiver


@contextlib.contextmanager
def serving(protocols: dict[str, Any], extensions: dict[str, Any] | None = None
            ) -> Iterator[tuple[OtlpReceiver, Recorder]]:
    recorder = Recorder()
    receiver = OtlpReceiver(receiver_config(protocols), recorder)
    receiver.set_host(Host(extensions or {}))
    receiver.start()
    try:
        yield receiver, recorder
    finally:
        receiver.shutdown()


def sdk_metrics(name: str = semconv.ML_PREDICT_ROWS) -> MetricsData:
    now = time.time_ns()
    rows = Sum([NumberDataPoint({semconv.ML_MODEL_NAME: "churn"}, now - 1000, now, 5)],
               AggregationTemporality.DELTA, True)
    scope = ScopeMetrics(InstrumentationScope("test"), [Metric(name, "", "{row}", rows)], "")
    return MetricsData([ResourceMetrics(Resource.create({}), [scope], "")])


def grpc_credentials(pki: Pki, client: bool = False, rogue: bool = False
                     ) -> grpc.ChannelCredentials:
    key = cert = None
    if client:
        key = (pki.rogue_client_key if rogue else pki.client_key).read_bytes()
        cert = (pki.rogue_client_cert if rogue else pki.client_cert).read_bytes()
    return grpc.ssl_channel_credentials(root_certificates=pki.ca.read_bytes(),
                                        private_key=key, certificate_chain=cert)


def grpc_export(endpoint: str, credentials: grpc.ChannelCredentials | None = None,
                metadata: Sequence[tuple[str, str]] = ()) -> Any:
    """One Export over a raw channel (to read the exact status code)."""
    request = metrics_service_pb2.ExportMetricsServiceRequest()
    request.resource_metrics.add().scope_metrics.add().metrics.add(name="raw")
    channel = (grpc.insecure_channel(endpoint) if credentials is None
               else grpc.secure_channel(endpoint, credentials))
    with channel:
        stub = metrics_service_pb2_grpc.MetricsServiceStub(channel)
        return stub.Export(request, metadata=metadata, timeout=EXPORT_TIMEOUT_S)


# --- TLS and mutual TLS -------------------------------------------------------------------


def test_grpc_tls_serves_the_sdk_exporter_that_trusts_the_ca(pki: Pki) -> None:
    protocols = {"grpc": {"endpoint": f"{LOOPBACK}:0", "tls": tls_node(pki, mutual=False)}}
    with serving(protocols) as (receiver, recorder):
        exporter = GrpcMetricExporter(endpoint=receiver.endpoint,
                                      credentials=grpc_credentials(pki),
                                      timeout=EXPORT_TIMEOUT_S)
        result = exporter.export(sdk_metrics())
        exporter.shutdown()
        # A plaintext client cannot talk to a TLS server.
        with pytest.raises(grpc.RpcError) as plaintext:
            grpc_export(receiver.endpoint)

    assert result == MetricExportResult.SUCCESS
    assert recorder.names == [[semconv.ML_PREDICT_ROWS]]
    assert plaintext.value.code() == grpc.StatusCode.UNAVAILABLE


def test_grpc_mutual_tls_accepts_only_clients_with_a_certificate_of_the_ca(pki: Pki) -> None:
    protocols = {"grpc": {"endpoint": f"{LOOPBACK}:0", "tls": tls_node(pki, mutual=True)}}
    with serving(protocols) as (receiver, recorder):
        with_cert = GrpcMetricExporter(endpoint=receiver.endpoint,
                                       credentials=grpc_credentials(pki, client=True),
                                       timeout=EXPORT_TIMEOUT_S)
        accepted = with_cert.export(sdk_metrics("with.cert"))
        with_cert.shutdown()
        without_cert = GrpcMetricExporter(endpoint=receiver.endpoint,
                                          credentials=grpc_credentials(pki),
                                          timeout=REFUSED_EXPORT_TIMEOUT_S)
        refused = without_cert.export(sdk_metrics("without.cert"))
        without_cert.shutdown()
        with pytest.raises(grpc.RpcError) as rogue:
            grpc_export(receiver.endpoint, grpc_credentials(pki, client=True, rogue=True))

    assert (accepted, refused) == (MetricExportResult.SUCCESS, MetricExportResult.FAILURE)
    assert recorder.names == [["with.cert"]]
    assert rogue.value.code() == grpc.StatusCode.UNAVAILABLE


def test_http_tls_serves_the_sdk_exporter_given_the_ca_file(pki: Pki) -> None:
    protocols = {"http": {"endpoint": f"{LOOPBACK}:0", "tls": tls_node(pki, mutual=False)}}
    with serving(protocols) as (receiver, recorder):
        exporter = HttpMetricExporter(endpoint=f"https://{receiver.http_endpoint}/v1/metrics",
                                      certificate_file=str(pki.ca), timeout=EXPORT_TIMEOUT_S)
        result = exporter.export(sdk_metrics())
        exporter.shutdown()

    assert result == MetricExportResult.SUCCESS
    assert recorder.names == [[semconv.ML_PREDICT_ROWS]]


def test_http_mutual_tls_refuses_a_client_without_a_certificate(pki: Pki) -> None:
    protocols = {"http": {"endpoint": f"{LOOPBACK}:0", "tls": tls_node(pki, mutual=True)}}
    url_of = "https://{}/v1/metrics".format
    with serving(protocols) as (receiver, recorder):
        with_cert = HttpMetricExporter(endpoint=url_of(receiver.http_endpoint),
                                       certificate_file=str(pki.ca),
                                       client_key_file=str(pki.client_key),
                                       client_certificate_file=str(pki.client_cert),
                                       timeout=EXPORT_TIMEOUT_S)
        accepted = with_cert.export(sdk_metrics("with.cert"))
        with_cert.shutdown()
        without_cert = HttpMetricExporter(endpoint=url_of(receiver.http_endpoint),
                                          certificate_file=str(pki.ca),
                                          timeout=REFUSED_EXPORT_TIMEOUT_S)
        refused = without_cert.export(sdk_metrics("without.cert"))
        without_cert.shutdown()
        rogue = HttpMetricExporter(endpoint=url_of(receiver.http_endpoint),
                                   certificate_file=str(pki.ca),
                                   client_key_file=str(pki.rogue_client_key),
                                   client_certificate_file=str(pki.rogue_client_cert),
                                   timeout=REFUSED_EXPORT_TIMEOUT_S)
        refused_rogue = rogue.export(sdk_metrics("rogue.cert"))
        rogue.shutdown()
        stats = receiver.stats()

    assert accepted == MetricExportResult.SUCCESS
    assert (refused, refused_rogue) == (MetricExportResult.FAILURE, MetricExportResult.FAILURE)
    assert recorder.names == [["with.cert"]]
    assert stats.accepted_requests == 1
    assert stats.rejected_requests >= 2  # failed handshakes (the SDK may retry some)


# --- bearer token authentication ----------------------------------------------------------


def bearer(token: str = TOKEN) -> BearerTokenAuth:
    extension = BearerTokenAuth(BearerTokenAuthConfig(token=token))
    extension.start()
    return extension


AUTH = {"auth": {"authenticator": "bearertokenauth"}}


def test_grpc_bearer_token_admits_the_right_token_only() -> None:
    protocols = {"grpc": {"endpoint": f"{LOOPBACK}:0", **AUTH}}
    with serving(protocols, {"bearertokenauth": bearer()}) as (receiver, recorder):
        exporter = GrpcMetricExporter(endpoint=receiver.endpoint, insecure=True,
                                      headers=AUTH_HEADERS, timeout=EXPORT_TIMEOUT_S)
        accepted = exporter.export(sdk_metrics("right.token"))
        exporter.shutdown()
        wrong = GrpcMetricExporter(endpoint=receiver.endpoint, insecure=True,
                                   headers={"authorization": "Bearer guess"},
                                   timeout=EXPORT_TIMEOUT_S)
        refused = wrong.export(sdk_metrics("wrong.token"))
        wrong.shutdown()
        with pytest.raises(grpc.RpcError) as missing:
            grpc_export(receiver.endpoint)
        with pytest.raises(grpc.RpcError) as bad:
            grpc_export(receiver.endpoint, metadata=[("authorization", "Bearer guess")])
        stats = receiver.stats()

    assert (accepted, refused) == (MetricExportResult.SUCCESS, MetricExportResult.FAILURE)
    assert recorder.names == [["right.token"]]
    assert missing.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "missing Authorization header" in missing.value.details()
    assert bad.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert TOKEN not in bad.value.details()
    # UNAUTHENTICATED is not retryable: the SDK tried once.
    assert stats.unauthenticated_requests == 3


def http_post(url: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, data=b"", method="POST",
                                     headers={"Content-Type": "application/x-protobuf",
                                              **headers})
    try:
        with urllib.request.urlopen(request, timeout=EXPORT_TIMEOUT_S) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def test_http_bearer_token_admits_the_right_token_only() -> None:
    protocols = {"http": {"endpoint": f"{LOOPBACK}:0", **AUTH}}
    with serving(protocols, {"bearertokenauth": bearer()}) as (receiver, recorder):
        url = f"http://{receiver.http_endpoint}/v1/metrics"
        exporter = HttpMetricExporter(endpoint=url, headers=AUTH_HEADERS,
                                      timeout=EXPORT_TIMEOUT_S)
        accepted = exporter.export(sdk_metrics("right.token"))
        exporter.shutdown()
        wrong = HttpMetricExporter(endpoint=url, headers={"Authorization": "Bearer guess"},
                                   timeout=EXPORT_TIMEOUT_S)
        refused = wrong.export(sdk_metrics("wrong.token"))
        wrong.shutdown()
        missing = http_post(url, {})
        other_scheme = http_post(url, {"Authorization": f"Basic {TOKEN}"})

    assert (accepted, refused) == (MetricExportResult.SUCCESS, MetricExportResult.FAILURE)
    assert recorder.names == [["right.token"]]
    status, headers, body = missing
    assert status == 401
    assert headers["WWW-Authenticate"].startswith("Bearer")
    assert b"missing Authorization header" in body
    assert other_scheme[0] == 401


def test_token_file_is_read_at_start_and_again_when_it_changes(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("first-token\n")
    extension = BearerTokenAuth(BearerTokenAuthConfig(filename=str(token_file)))
    extension.start()
    protocols = {"http": {"endpoint": f"{LOOPBACK}:0", **AUTH}}
    with serving(protocols, {"bearertokenauth": extension}) as (receiver, _):
        url = f"http://{receiver.http_endpoint}/v1/metrics"
        before = http_post(url, {"Authorization": "Bearer first-token"})[0]
        token_file.write_text("second-token")
        # A new mtime even on file systems with coarse timestamps.
        stat = token_file.stat()
        os.utime(token_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
        old = http_post(url, {"Authorization": "Bearer first-token"})[0]
        new = http_post(url, {"Authorization": "Bearer second-token"})[0]

    assert (before, old, new) == (200, 401, 200)


def test_authenticator_not_enabled_is_a_config_problem_naming_the_path() -> None:
    problems = problems_of({
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": f"{LOOPBACK}:0", **AUTH}}}},
        "exporters": {"file": {"path": os.devnull}},
        "extensions": {"bearertokenauth": {"token": TOKEN}},
        "service": {"pipelines": {"metrics": {"receivers": ["otlp"], "exporters": ["file"]}}},
    })

    assert any(p.startswith("receivers::otlp::protocols::grpc::auth::authenticator: "
                            "extension 'bearertokenauth' is not enabled") for p in problems)


def test_authenticator_missing_from_the_host_fails_the_start_naming_the_path() -> None:
    receiver = OtlpReceiver(OtlpReceiverConfig(ProtocolsConfig(grpc=GrpcConfig(
        endpoint=f"{LOOPBACK}:0", auth=AuthConfig("bearertokenauth")))), Recorder())
    receiver.set_host(Host({}))
    with pytest.raises(ComponentError) as caught:
        receiver.start()

    assert str(caught.value) == ("protocols::grpc::auth::authenticator: extension "
                                 "'bearertokenauth' is not enabled in service::extensions "
                                 "(enabled: none)")
    assert receiver.endpoint is None


def test_receiver_in_a_pipeline_graph_gets_its_authenticator_from_the_host() -> None:
    config = parse_config({
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": f"{LOOPBACK}:0", **AUTH}}}},
        "exporters": {"file": {"path": os.devnull}},
        "extensions": {"bearertokenauth": {"token": TOKEN}},
        "service": {"extensions": ["bearertokenauth"], "telemetry": {"metrics": {
            "level": "none"}},
            "pipelines": {"metrics": {"receivers": ["otlp"], "exporters": ["file"]}}},
    }, environ={})
    pipelines = build(config)
    pipelines.start()
    try:
        [receiver] = [n.component for n in pipelines.nodes() if n.kind == "receiver"]
        accepted = grpc_export(receiver.endpoint, metadata=[("authorization",
                                                             f"Bearer {TOKEN}")])
        with pytest.raises(grpc.RpcError) as refused:
            grpc_export(receiver.endpoint)
    finally:
        pipelines.shutdown()

    assert accepted == metrics_service_pb2.ExportMetricsServiceResponse()
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_an_extension_that_is_not_an_authenticator_is_refused() -> None:
    receiver = OtlpReceiver(OtlpReceiverConfig(ProtocolsConfig(http=HttpConfig(
        endpoint=f"{LOOPBACK}:0", auth=AuthConfig("health_check")))), Recorder())
    receiver.set_host(Host({"health_check": object()}))
    with pytest.raises(ComponentError, match="does not authenticate requests"):
        receiver.start()
    assert receiver.http_endpoint is None  # nothing left listening


# --- config -------------------------------------------------------------------------------


def problems_of(document: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(document, environ={})
    return caught.value.problems


def test_tls_files_must_exist_naming_the_yaml_path(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.pem")
    problems = problems_of({
        "receivers": {"otlp": {"protocols": {
            "grpc": {"tls": {"cert_file": missing, "key_file": missing,
                             "client_ca_file": missing}},
            "http": {"tls": {"key_file": missing}}}}},
        "exporters": {"file": {"path": os.devnull}},
        "service": {"pipelines": {"metrics": {"receivers": ["otlp"], "exporters": ["file"]}}},
    })

    grpc_tls = "receivers::otlp::protocols::grpc::tls"
    assert f"{grpc_tls}::cert_file: file {missing!r} does not exist (or is not a file)" \
        in problems
    assert f"{grpc_tls}::key_file: file {missing!r} does not exist (or is not a file)" \
        in problems
    assert f"{grpc_tls}::client_ca_file: file {missing!r} does not exist (or is not a file)" \
        in problems
    assert any(p.startswith("receivers::otlp::protocols::http::tls::cert_file: required")
               for p in problems)


def test_auth_and_bearertokenauth_problems_name_their_keys(tmp_path: Path) -> None:
    problems = problems_of({
        "receivers": {"otlp": {"protocols": {"http": {"auth": {}}}}},
        "exporters": {"file": {"path": os.devnull}},
        "extensions": {"bearertokenauth": {},
                       "bearertokenauth/file": {"filename": str(tmp_path / "missing")},
                       "bearertokenauth/both": {"token": "a", "filename": os.devnull}},
        "service": {"pipelines": {"metrics": {"receivers": ["otlp"], "exporters": ["file"]}}},
    })

    assert any(p.startswith("receivers::otlp::protocols::http::auth::authenticator: "
                            "required") for p in problems)
    assert any(p.startswith("extensions::bearertokenauth::token: required") for p in problems)
    assert any(p.startswith("extensions::bearertokenauth/file::filename: file")
               and "does not exist" in p for p in problems)
    assert "extensions::bearertokenauth/both::token: set either token or filename, not both" \
        in problems


def test_token_from_the_environment_through_the_config_loader() -> None:
    config = parse_config({
        "receivers": {"otlp": {"protocols": {"grpc": AUTH}}},
        "exporters": {"file": {"path": os.devnull}},
        "extensions": {"bearertokenauth": {"token": "${env:OTLP_TOKEN}"}},
        "service": {"extensions": ["bearertokenauth"],
                    "pipelines": {"metrics": {"receivers": ["otlp"], "exporters": ["file"]}}},
    }, environ={"OTLP_TOKEN": TOKEN})
    [extension_config] = config.extensions.values()
    assert extension_config == BearerTokenAuthConfig(token=TOKEN)
    [receiver] = config.receivers.values()
    assert receiver.protocols.grpc == GrpcConfig(auth=AuthConfig("bearertokenauth"))


# --- the service as a subprocess ----------------------------------------------------------


@pytest.mark.integration
def test_collector_with_mtls_and_bearer_token_on_both_protocols(
    tmp_path: Path, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRIFTLINE_TEST_OTLP_TOKEN", TOKEN)
    output = tmp_path / "out.jsonl"
    tls = tls_node(pki, mutual=True)
    config = {
        "receivers": {"otlp": {"protocols": {
            "grpc": {"endpoint": f"{LOOPBACK}:0", "tls": tls, **AUTH},
            "http": {"endpoint": f"{LOOPBACK}:0", "tls": tls, **AUTH}}}},
        "extensions": {"bearertokenauth": {"token": "${env:DRIFTLINE_TEST_OTLP_TOKEN}"}},
        "exporters": {"file": {"path": str(output), "flush_interval": 0}},
        "service": {"extensions": ["bearertokenauth"], "pipelines": {
            "metrics": {"receivers": ["otlp"], "exporters": ["file"]}}},
    }
    with running_collector(config, tmp_path, (PROTOCOL_GRPC, PROTOCOL_HTTP)) as collector:
        grpc_exporter = GrpcMetricExporter(
            endpoint=collector.endpoints[PROTOCOL_GRPC],
            credentials=grpc_credentials(pki, client=True), headers=AUTH_HEADERS,
            timeout=EXPORT_TIMEOUT_S)
        http_exporter = HttpMetricExporter(
            endpoint=f"https://{collector.endpoints[PROTOCOL_HTTP]}/v1/metrics",
            certificate_file=str(pki.ca), client_key_file=str(pki.client_key),
            client_certificate_file=str(pki.client_cert), headers=AUTH_HEADERS,
            timeout=EXPORT_TIMEOUT_S)
        results = (grpc_exporter.export(sdk_metrics("over.grpc")),
                   http_exporter.export(sdk_metrics("over.http")))
        no_token = HttpMetricExporter(
            endpoint=f"https://{collector.endpoints[PROTOCOL_HTTP]}/v1/metrics",
            certificate_file=str(pki.ca), client_key_file=str(pki.client_key),
            client_certificate_file=str(pki.client_cert), timeout=EXPORT_TIMEOUT_S)
        refused = no_token.export(sdk_metrics("no.token"))
        for exporter in (grpc_exporter, http_exporter, no_token):
            exporter.shutdown()

    assert collector.returncode == 0, collector.stderr()
    assert results == (MetricExportResult.SUCCESS, MetricExportResult.SUCCESS)
    assert refused == MetricExportResult.FAILURE
    names = {m.name for request in read_metrics(output) for rm in request.resource_metrics
             for sm in rm.scope_metrics for m in sm.metrics}
    assert {"over.grpc", "over.http"} <= names
    assert "no.token" not in names
    assert TOKEN not in collector.stderr()
    assert json.dumps(TOKEN) not in output.read_text()
