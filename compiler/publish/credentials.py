"""Registry credentials: from the environment, else from a docker-style config file;
never from the command line. The password is held in a type whose repr hides it, and no
message or log line of inferc carries it."""

from __future__ import annotations

import base64
import binascii
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from inferc.core.errors import InferCError

ENV_USERNAME = "INFERC_REGISTRY_USERNAME"
ENV_PASSWORD = "INFERC_REGISTRY_PASSWORD"
ENV_DOCKER_CONFIG = "DOCKER_CONFIG"  # a directory holding config.json, as docker reads it


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)
    source: str  # where they came from, for messages: an env var name or a config path


def docker_config_path() -> Path:
    base = os.environ.get(ENV_DOCKER_CONFIG)
    return Path(base) / "config.json" if base else Path.home() / ".docker" / "config.json"


def _from_docker_config(host: str) -> Credentials | None:
    path = docker_config_path()
    if not path.is_file():
        return None
    try:
        auths = json.loads(path.read_text()).get("auths") or {}
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as exc:
        raise InferCError(f"{path} is not a docker config file (JSON with an 'auths' mapping): {type(exc).__name__}") from exc
    for key in (host, f"http://{host}", f"https://{host}"):
        entry = auths.get(key)
        if not isinstance(entry, dict):
            continue
        if entry.get("username") and entry.get("password"):
            return Credentials(str(entry["username"]), str(entry["password"]), str(path))
        if entry.get("auth"):
            try:
                user, sep, password = base64.b64decode(entry["auth"], validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError) as exc:
                raise InferCError(f"{path}: the 'auth' entry for {host} is not base64 of 'user:password'") from exc
            if not sep:
                raise InferCError(f"{path}: the 'auth' entry for {host} is not base64 of 'user:password'")
            return Credentials(user, password, str(path))
    return None


def registry_credentials(host: str) -> Credentials | None:
    """INFERC_REGISTRY_USERNAME / INFERC_REGISTRY_PASSWORD when both are set, else the
    docker config's entry for host (DOCKER_CONFIG or ~/.docker/config.json), else None."""
    user, password = os.environ.get(ENV_USERNAME), os.environ.get(ENV_PASSWORD)
    if user or password:
        if not (user and password):
            missing = ENV_PASSWORD if user else ENV_USERNAME
            raise InferCError(f"{missing} is not set; set both {ENV_USERNAME} and {ENV_PASSWORD}, or neither")
        return Credentials(user, password, f"{ENV_USERNAME}/{ENV_PASSWORD}")
    return _from_docker_config(host)
