"""The handlers' clients: one pooled connection per thread that shares a client."""

from __future__ import annotations

from bincount.settings import Settings
from bincount.wiring import DEFAULT_POOL_CONNECTIONS, Clients


def settings_with(**workers: int) -> Settings:
    required = {
        "results_bucket": "r",
        "counts_table": "c",
        "jobs_table": "j",
        "event_bus_name": "b",
        "model_name": "m",
    }
    return Settings(**required, **workers)  # type: ignore[arg-type]


def test_clients_pool_a_connection_for_each_thread_of_the_widest_pool() -> None:
    settings = settings_with(staging_workers=24, result_read_workers=8)
    clients = Clients.for_settings(settings)
    for client in (clients.s3, clients.sagemaker, clients.events, clients.sqs, clients.dynamodb.meta.client):
        assert client.meta.config.max_pool_connections == 24
    narrow = settings_with(staging_workers=2, result_read_workers=3)
    assert Clients.for_settings(narrow).s3.meta.config.max_pool_connections == DEFAULT_POOL_CONNECTIONS


def test_given_clients_are_kept() -> None:
    given = object()
    assert Clients(s3=given).s3 is given
