"""Secrets: generated once and kept (lookup on upgrade, keep on uninstall), or existing ones."""

from __future__ import annotations

import base64

from tests.chart.objects import container, env_of, find, has, name_of
from tests.support.helm import render

GENERATED = {
    "secret-key": ["secret-key"],
    "postgres": ["password"],
    "redis": ["password"],
    "rabbitmq": ["username", "password"],
}


def test_generated_secrets_are_random_strong_and_kept() -> None:
    docs = render({})
    for component, keys in GENERATED.items():
        secret = find(docs, "Secret", name_of(component))
        assert sorted(secret["data"]) == sorted(keys)
        assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        for key in keys:
            value = base64.b64decode(secret["data"][key]).decode()
            if key == "username":
                assert value == "imgconv"
            else:
                assert len(value) >= 32
                assert value.isalnum()  # goes into URLs without escaping


def test_every_render_outside_a_cluster_generates_new_ones() -> None:
    # With no cluster `lookup` finds nothing (the install path); test_lookup.py shows an
    # upgrade against an API server keeping what it holds.
    first = render({"nameOverride": "a"})
    second = render({"nameOverride": "b"})
    key = "imgconv-a-postgres", "imgconv-b-postgres"
    assert find(first, "Secret", key[0])["data"] != find(second, "Secret", key[1])["data"]


def test_existing_secrets_replace_the_generated_ones() -> None:
    docs = render(
        {
            "secretKey": {"existingSecret": "app", "existingSecretKey": "key"},
            "postgres": {"auth": {"existingSecret": "pg", "passwordKey": "pw"}},
            "redis": {"auth": {"existingSecret": "rd"}},
            "rabbitmq": {"auth": {"existingSecret": "mq", "usernameKey": "u", "passwordKey": "p"}},
        }
    )
    for component in GENERATED:
        assert not has(docs, "Secret", name_of(component))
    env = env_of(container(find(docs, "Deployment", name_of("api")), "api"))
    assert env["IMGCONV_SECRET_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "app", "key": "key"}
    assert env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "pg", "key": "pw"}
    assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "rd", "key": "password"}
    assert env["RABBITMQ_USERNAME"]["valueFrom"]["secretKeyRef"] == {"name": "mq", "key": "u"}
    postgres = env_of(container(find(docs, "StatefulSet", name_of("postgres")), "postgres"))
    assert postgres["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "pg", "key": "pw"}
    rabbitmq = env_of(container(find(docs, "StatefulSet", name_of("rabbitmq")), "rabbitmq"))
    assert rabbitmq["RABBITMQ_DEFAULT_PASS"]["valueFrom"]["secretKeyRef"] == {
        "name": "mq",
        "key": "p",
    }
