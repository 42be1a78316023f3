"""A loopback stand-in for the few Hugging Face Hub endpoints huggingface_hub calls to
create a repository, commit files and download them. It is not the Hub: every file is
accepted as a "regular" (inline base64) upload, so LFS and Xet transfers are never
exercised. Unknown endpoints answer 404 and are recorded, so a test sees them."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Commit:
    repo_id: str
    revision: str
    sha: str
    summary: str
    files: dict[str, bytes]  # the whole tree after the commit


@dataclass
class HubState:
    trees: dict[str, dict[str, str]] = field(default_factory=dict)  # repo -> branch -> commit sha
    commits: dict[str, Commit] = field(default_factory=dict)  # sha -> commit
    commit_posts: list[Commit] = field(default_factory=list)
    created: list[tuple[str, bool]] = field(default_factory=list)  # (repo, private)
    validated_yaml: list[dict] = field(default_factory=list)  # README.md front matter, as the fake parsed it
    unknown: list[str] = field(default_factory=list)
    authorizations: set[str] = field(default_factory=set)


class _Handler(BaseHTTPRequestHandler):
    state: HubState
    base: str

    def log_message(self, *args) -> None:  # quiet
        pass

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None, head: bool = False) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _json(self, status: int, obj, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), {"Content-Type": "application/json", **(headers or {})})

    def _error(self, status: int, code: str | None = None, message: str = "") -> None:
        self._json(status, {"error": message or code or "error"}, {"X-Error-Code": code} if code else None)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _resolve(self, repo: str, rev: str) -> str | None:
        rev = urllib.parse.unquote(rev)
        branches = self.state.trees.get(repo, {})
        return branches.get(rev) or (rev if rev in self.state.commits and self.state.commits[rev].repo_id == repo else None)

    def do_POST(self) -> None:  # noqa: N802
        self.state.authorizations.add(self.headers.get("Authorization", ""))
        path = urllib.parse.urlparse(self.path).path
        parts = path.strip("/").split("/")
        body = self._body()
        if path == "/api/repos/create":
            payload = json.loads(body)
            repo = f"{payload.get('organization')}/{payload['name']}"
            if repo in self.state.trees:
                return self._json(409, {"error": "You already created this model repo", "url": f"{self.base}/{repo}"})
            empty = hashlib.sha1(repo.encode()).hexdigest()
            self.state.commits[empty] = Commit(repo, "main", empty, "initial commit", {})
            self.state.trees[repo] = {"main": empty}
            self.state.created.append((repo, payload.get("visibility") == "private" or bool(payload.get("private"))))
            return self._json(200, {"url": f"{self.base}/{repo}", "name": repo})
        if path == "/api/validate-yaml":
            return self._validate_yaml(json.loads(body)["content"])
        if len(parts) >= 6 and parts[:2] == ["api", "models"]:
            repo, action, rev = f"{parts[2]}/{parts[3]}", parts[4], "/".join(parts[5:])
            if repo not in self.state.trees:
                return self._error(404, "RepoNotFound", "Repository not found")
            if action == "branch":
                if urllib.parse.unquote(rev) in self.state.trees[repo]:
                    return self._error(409, message="branch exists")
                self.state.trees[repo][urllib.parse.unquote(rev)] = self.state.trees[repo]["main"]
                return self._json(200, {})
            head = self._resolve(repo, rev)
            if head is None:
                return self._error(404, "RevisionNotFound", "Invalid rev id")
            if action == "preupload":
                files = json.loads(body)["files"]
                return self._json(200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]})
            if action == "commit":
                return self._commit(repo, urllib.parse.unquote(rev), head, body)
        self.state.unknown.append(f"POST {path}")
        self._error(404, message=f"fake hub: no POST {path}")

    def _validate_yaml(self, content: str) -> None:
        """The card's front matter (between the leading '---' lines) must be a YAML mapping."""
        import yaml

        if not content.startswith("---\n") or "\n---\n" not in content[3:]:
            return self._json(200, {"errors": [], "warnings": [{"message": "empty or missing yaml metadata"}]})
        try:
            parsed = yaml.safe_load(content[4:].split("\n---\n", 1)[0])
        except yaml.YAMLError as exc:
            return self._json(400, {"errors": [{"message": str(exc)}], "warnings": []})
        if not isinstance(parsed, dict):
            return self._json(400, {"errors": [{"message": "metadata is not a mapping"}], "warnings": []})
        self.state.validated_yaml.append(parsed)
        self._json(200, {"errors": [], "warnings": []})

    def _commit(self, repo: str, branch: str, head: str, body: bytes) -> None:
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        header = next(x["value"] for x in lines if x["key"] == "header")
        tree = dict(self.state.commits[head].files)
        for item in lines:
            if item["key"] == "file":
                tree[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
            elif item["key"] != "header":
                return self._error(400, message=f"fake hub: unsupported commit item {item['key']}")
        sha = hashlib.sha1(head.encode() + json.dumps(sorted((p, hashlib.sha256(b).hexdigest()) for p, b in tree.items())).encode()).hexdigest()
        commit = Commit(repo, branch, sha, header.get("summary", ""), tree)
        self.state.commits[sha] = commit
        self.state.trees[repo][branch] = sha
        self.state.commit_posts.append(commit)
        self._json(200, {"commitUrl": f"{self.base}/{repo}/commit/{sha}", "commitOid": sha, "pullRequestUrl": None})

    def _get(self, head: bool) -> None:
        path = urllib.parse.urlparse(self.path).path
        parts = path.strip("/").split("/")
        if path == "/api/agent-harnesses":  # huggingface_hub's user-agent detection asks for this list
            return self._json(200, {"standardEnvVars": [], "harnesses": {}})
        if parts[:2] == ["api", "models"] and (len(parts) == 4 or (len(parts) >= 6 and parts[4] == "revision")):
            repo = f"{parts[2]}/{parts[3]}"
            rev = "/".join(parts[5:]) if len(parts) > 4 else "main"
            sha = self._resolve(repo, rev) if repo in self.state.trees else None
            if sha is None:
                return self._error(404, "RepoNotFound" if repo not in self.state.trees else "RevisionNotFound")
            files = self.state.commits[sha].files
            return self._json(200, {"id": repo, "modelId": repo, "sha": sha, "private": False,
                                    "siblings": [{"rfilename": p} for p in sorted(files)]})
        if len(parts) >= 5 and parts[2] == "resolve":
            repo, rev, file = f"{parts[0]}/{parts[1]}", parts[3], urllib.parse.unquote("/".join(parts[4:]))
            sha = self._resolve(repo, rev)
            files = self.state.commits[sha].files if sha else {}
            if file not in files:
                return self._error(404, "EntryNotFound", "Entry not found")
            data = files[file]
            return self._send(200, data, {"X-Repo-Commit": sha, "ETag": f'"{hashlib.sha256(data).hexdigest()}"',
                                          "Content-Type": "application/octet-stream"}, head=head)
        self.state.unknown.append(f"{'HEAD' if head else 'GET'} {path}")
        self._error(404, message=f"fake hub: no GET {path}")

    def do_GET(self) -> None:  # noqa: N802
        self._get(head=False)

    def do_HEAD(self) -> None:  # noqa: N802
        self._get(head=True)


class FakeHub:
    """Start on 127.0.0.1 with a free port; `url` is the endpoint to point huggingface_hub at."""

    def __init__(self) -> None:
        self.state = HubState()
        handler = type("Handler", (_Handler,), {"state": self.state})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        handler.base = self.url
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
