"""A small AWS Amplify emulator: a real HTTP server speaking Amplify's REST-JSON protocol.

moto has no Amplify, so the sandbox runs this instead. It is driven by botocore's own
Amplify model: request routing (method + URI template), input parsing (uri, querystring,
body members) and input validation (required members, types, enums, lengths, ranges,
patterns) all come from the model, so what boto3 sends is what we check, and answers carry
every member the model marks as required in the output shapes.

Errors use the REST-JSON error shape botocore understands: the HTTP status of the modeled
exception, an `x-amzn-ErrorType` header and a JSON body with `message` (and `code` for
`ResourceNotFoundException`, which requires it), so boto3 raises `NotFoundException`,
`BadRequestException` ... as against the real service.

Operations: CreateApp, GetApp, ListApps, UpdateApp, DeleteApp, CreateBranch, GetBranch,
ListBranches, UpdateBranch, DeleteBranch, CreateDomainAssociation, GetDomainAssociation,
ListDomainAssociations, DeleteDomainAssociation, ListTagsForResource, TagResource,
UntagResource. Others answer 400 naming the operation as not emulated.

Region comes from the SigV4 credential scope of the `Authorization` header (default
`--region`); the account is the access key id when that is 12 digits, else `--account-id`
(apps live in one account and region, as on AWS). State is one JSON file, rewritten
atomically after every change, so a restart keeps it. App ids are derived from a hash of
(account, region, name, creation counter): a fresh sandbox seeded the same way gets the
same ids. `GET /_sandbox/health` answers 200 for probes.

Run: python -m sandbox.amplify --host 127.0.0.1 --port 41002 --state .sandbox/amplify.json
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import copy
import hashlib
import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote

import botocore.session
from botocore.model import OperationModel, ServiceModel, Shape, StructureShape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

log = logging.getLogger("sandbox.amplify")

DEFAULT_ACCOUNT_ID = "123456789012"
DEFAULT_REGION = "us-east-1"
STATE_VERSION = 1
AMPLIFY_DOMAIN = "amplifyapp.com"
_CREDENTIAL_SCOPE = re.compile(r"Credential=([^/,\s]+)/\d{8}/([a-z0-9-]+)/amplify/aws4_request")


def load_service_model() -> ServiceModel:
    """botocore's Amplify model, the single source of paths, field names and rules."""
    loader = botocore.session.get_session().get_component("data_loader")
    return ServiceModel(loader.load_service_model("amplify", "service-2"), service_name="amplify")


# --- errors -------------------------------------------------------------------------------


class AmplifyError(Exception):
    """A modeled Amplify exception: its shape name is the error code botocore maps to a class."""

    status_by_code = {
        "BadRequestException": 400,
        "UnauthorizedException": 401,
        "NotFoundException": 404,
        "ResourceNotFoundException": 404,
        "LimitExceededException": 429,
        "InternalFailureException": 500,
        "DependentServiceFailureException": 503,
    }

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = self.status_by_code[code]

    def response(self) -> JSONResponse:
        body = {"message": self.message}
        if self.code == "ResourceNotFoundException":
            body["code"] = self.code  # that shape declares `code` required
        return JSONResponse(body, status_code=self.status, headers={"x-amzn-ErrorType": self.code})


def bad_request(message: str) -> AmplifyError:
    return AmplifyError("BadRequestException", message)


def not_found(message: str) -> AmplifyError:
    return AmplifyError("NotFoundException", message)


# --- input validation against the model ------------------------------------------------------


def validate_input(shape: StructureShape, params: dict[str, Any]) -> None:
    """Check `params` against the input shape; raise one 400 listing every problem, AWS style."""
    problems: list[str] = []
    _check_structure(shape, params, "", problems)
    if problems:
        count = len(problems)
        raise bad_request(f"{count} validation error{'s' if count > 1 else ''} detected: " + "; ".join(problems))


def _check_structure(shape: StructureShape, value: Any, path: str, problems: list[str]) -> None:
    if not isinstance(value, dict):
        problems.append(f"Value at '{path or shape.name}' failed to satisfy constraint: Member must be an object")
        return
    for name in shape.required_members:
        if value.get(name) is None:
            problems.append(
                f"Value null at '{_join(path, name)}' failed to satisfy constraint: Member must not be null"
            )
    for name, member_value in value.items():
        member = shape.members.get(name)
        if member is None:
            problems.append(f"Unknown member '{_join(path, name)}'")
        elif member_value is not None:
            _check_value(member, member_value, _join(path, name), problems)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _check_value(shape: Shape, value: Any, path: str, problems: list[str]) -> None:
    kind = shape.type_name
    if kind == "structure":
        _check_structure(shape, value, path, problems)  # type: ignore[arg-type]
    elif kind == "list":
        if not _expect(isinstance(value, list), "a list", path, problems):
            return
        _check_length(shape, len(value), path, problems)
        for index, item in enumerate(value):
            _check_value(shape.member, item, f"{path}.{index + 1}.member", problems)  # type: ignore[attr-defined]
    elif kind == "map":
        if not _expect(isinstance(value, dict), "a map", path, problems):
            return
        for key, item in value.items():
            _check_value(shape.key, key, f"{path}.key", problems)  # type: ignore[attr-defined]
            _check_value(shape.value, item, f"{path}.{key}", problems)  # type: ignore[attr-defined]
    elif kind == "string":
        if _expect(isinstance(value, str), "a string", path, problems):
            _check_string(shape, value, path, problems)
    elif kind == "boolean":
        _expect(isinstance(value, bool), "a boolean", path, problems)
    elif kind in ("integer", "long") and _expect(
        isinstance(value, int) and not isinstance(value, bool), "an integer", path, problems
    ):
        _check_range(shape, value, path, problems)


def _expect(ok: bool, what: str, path: str, problems: list[str]) -> bool:
    if not ok:
        problems.append(f"Value at '{path}' failed to satisfy constraint: Member must be {what}")
    return ok


def _check_string(shape: Shape, value: str, path: str, problems: list[str]) -> None:
    if shape.enum and value not in shape.enum:
        problems.append(
            f"Value '{value}' at '{path}' failed to satisfy constraint: "
            f"Member must satisfy enum value set: [{', '.join(shape.enum)}]"
        )
    _check_length(shape, len(value), path, problems)
    pattern = shape.metadata.get("pattern")
    if pattern and not _pattern_matches(pattern, value):
        problems.append(
            f"Value at '{path}' failed to satisfy constraint: Member must satisfy regular expression pattern: {pattern}"
        )


def _pattern_matches(pattern: str, value: str) -> bool:
    # Smithy patterns are not implicitly anchored: search, as the service does.
    try:
        return re.search(pattern, value) is not None
    except re.error:  # a Java-only construct: do not reject what we cannot judge
        return True


def _check_length(shape: Shape, length: int, path: str, problems: list[str]) -> None:
    low, high = shape.metadata.get("min"), shape.metadata.get("max")
    if low is not None and length < low:
        problems.append(f"Value at '{path}' failed to satisfy constraint: Member must have length >= {low}")
    if high is not None and length > high:
        problems.append(f"Value at '{path}' failed to satisfy constraint: Member must have length <= {high}")


def _check_range(shape: Shape, value: int, path: str, problems: list[str]) -> None:
    low, high = shape.metadata.get("min"), shape.metadata.get("max")
    if low is not None and value < low:
        problems.append(f"Value '{value}' at '{path}' failed to satisfy constraint: Member must be >= {low}")
    if high is not None and value > high:
        problems.append(f"Value '{value}' at '{path}' failed to satisfy constraint: Member must be <= {high}")


# --- routing and request decoding from the model -----------------------------------------------


@dataclass(frozen=True)
class RouteSpec:
    operation: OperationModel
    method: str
    pattern: re.Pattern[str]


def build_routes(model: ServiceModel) -> list[RouteSpec]:
    """One regex per operation from its `requestUri`, matched against the *raw* (encoded) path.

    botocore percent-encodes every non-greedy label, '/' included, so splitting the raw path
    on '/' and decoding each label afterwards is the exact inverse (branch names may hold '/').
    """
    routes = []
    for name in model.operation_names:
        operation = model.operation_model(name)
        uri = operation.http["requestUri"].split("?", 1)[0]
        parts = re.split(r"\{(\w+)\+?\}", uri)  # literal, label, literal, label, ...
        regex = "".join(re.escape(part) if i % 2 == 0 else f"(?P<{part}>[^/]+)" for i, part in enumerate(parts))
        routes.append(RouteSpec(operation, operation.http["method"], re.compile(f"^{regex}$")))
    return routes


def decode_params(operation: OperationModel, labels: dict[str, str], query: str, body: bytes) -> dict[str, Any]:
    """Rebuild the boto3 call's parameters from uri labels, the query string and the JSON body."""
    shape = operation.input_shape
    params: dict[str, Any] = {}
    if body.strip():
        try:
            payload = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise bad_request("The request body is not valid JSON") from None
        if not isinstance(payload, dict):
            raise bad_request("The request body must be a JSON object")
        params.update(payload)
    if shape is None:
        return params
    query_values = parse_qs(query, keep_blank_values=True)
    for name, member in shape.members.items():
        location = member.serialization.get("location")
        wire = member.serialization.get("name", name)
        if location == "uri" and wire in labels:
            params[name] = unquote(labels[wire])
        elif location == "querystring" and wire in query_values:
            params[name] = _query_value(member, query_values[wire], wire)
    return params


def _query_value(shape: Shape, values: list[str], wire: str) -> Any:
    if shape.type_name == "list":
        return values
    if shape.type_name in ("integer", "long"):
        try:
            return int(values[0])
        except ValueError:
            raise bad_request(f"Query parameter '{wire}' must be an integer") from None
    if shape.type_name == "boolean":
        return values[0].lower() == "true"
    return values[0]


@dataclass(frozen=True)
class Caller:
    account: str
    region: str


def caller_from(request: Request, default_account: str, default_region: str) -> Caller:
    """Region from the SigV4 credential scope; account = a 12-digit access key id, else the default."""
    match = _CREDENTIAL_SCOPE.search(request.headers.get("authorization", ""))
    if not match:
        return Caller(default_account, default_region)
    access_key, region = match.groups()
    account = access_key if re.fullmatch(r"\d{12}", access_key) else default_account
    return Caller(account, region)


# --- state ----------------------------------------------------------------------------------


class Store:
    """All apps of all accounts and regions, persisted as one JSON document.

    Layout: {"version": 1, "counter": N, "apps": {appId: {"account", "region", "app",
    "branches": {name: branch}, "domains": {name: domain}}}}. Dict order is creation order,
    which the list operations keep.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = {"version": STATE_VERSION, "counter": 0, "apps": {}}
        if path.exists():
            self.data = self._read(path)

    @staticmethod
    def _read(path: Path) -> dict[str, Any]:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise RuntimeError(f"cannot read the Amplify emulator state {path}: {exc}") from exc
        if data.get("version") != STATE_VERSION:
            raise RuntimeError(f"{path}: state version {data.get('version')!r}, expected {STATE_VERSION}")
        return data

    def save(self) -> None:
        """Write to a temporary file in the same directory, fsync, then rename over the old one."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(self.data, handle, indent=1, sort_keys=False)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def apps_of(self, caller: Caller) -> Iterator[dict[str, Any]]:
        for record in self.data["apps"].values():
            if record["account"] == caller.account and record["region"] == caller.region:
                yield record

    def record(self, caller: Caller, app_id: str) -> dict[str, Any]:
        record = self.data["apps"].get(app_id)
        if record is None or record["account"] != caller.account or record["region"] != caller.region:
            raise not_found(f"App {app_id} not found.")
        return record

    def new_app_id(self, caller: Caller, name: str) -> str:
        self.data["counter"] += 1
        digest = hashlib.sha256(f"{caller.account}/{caller.region}/{name}/{self.data['counter']}".encode()).digest()
        number = int.from_bytes(digest[:10], "big")
        chars = "0123456789abcdefghijklmnopqrstuvwxyz"
        out = ""
        for _ in range(13):
            number, rest = divmod(number, 36)
            out += chars[rest]
        return "d" + out


# --- operations -------------------------------------------------------------------------------


def now() -> float:
    return round(time.time(), 3)


def app_arn(caller: Caller, app_id: str) -> str:
    return f"arn:aws:amplify:{caller.region}:{caller.account}:apps/{app_id}"


def _copy_members(source: dict[str, Any], target: dict[str, Any], shape: StructureShape, skip: set[str]) -> None:
    """Copy every input member the output shape also declares (the service echoes settings)."""
    for name, value in source.items():
        if name in shape.members and name not in skip:
            target[name] = copy.deepcopy(value)


# members that are inputs only (tokens) or kept outside the copied settings
_APP_SKIP = {"appId", "oauthToken", "accessToken", "tags"}
_BRANCH_SKIP = {"appId", "branchName", "tags"}


class Amplify:
    """The operations. Each takes the caller and the decoded parameters, returns the output dict."""

    def __init__(self, store: Store, model: ServiceModel) -> None:
        self.store = store
        self.app_shape: StructureShape = model.shape_for("App")  # type: ignore[assignment]
        self.branch_shape: StructureShape = model.shape_for("Branch")  # type: ignore[assignment]

    def handlers(self) -> dict[str, Callable[[Caller, dict[str, Any]], dict[str, Any]]]:
        return {
            "CreateApp": self.create_app,
            "GetApp": self.get_app,
            "ListApps": self.list_apps,
            "UpdateApp": self.update_app,
            "DeleteApp": self.delete_app,
            "CreateBranch": self.create_branch,
            "GetBranch": self.get_branch,
            "ListBranches": self.list_branches,
            "UpdateBranch": self.update_branch,
            "DeleteBranch": self.delete_branch,
            "CreateDomainAssociation": self.create_domain_association,
            "GetDomainAssociation": self.get_domain_association,
            "ListDomainAssociations": self.list_domain_associations,
            "DeleteDomainAssociation": self.delete_domain_association,
            "ListTagsForResource": self.list_tags_for_resource,
            "TagResource": self.tag_resource,
            "UntagResource": self.untag_resource,
        }

    # apps

    def create_app(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        app_id = self.store.new_app_id(caller, params["name"])
        stamp = now()
        app: dict[str, Any] = {
            "appId": app_id,
            "appArn": app_arn(caller, app_id),
            "name": params["name"],
            "tags": dict(params.get("tags") or {}),
            "description": "",
            "repository": "",
            "platform": "WEB",
            "createTime": stamp,
            "updateTime": stamp,
            "environmentVariables": {},
            "defaultDomain": f"{app_id}.{AMPLIFY_DOMAIN}",
            "enableBranchAutoBuild": False,
            "enableBranchAutoDeletion": False,
            "enableBasicAuth": False,
            "customRules": [],
            "enableAutoBranchCreation": False,
            "cacheConfig": {"type": "AMPLIFY_MANAGED_NO_COOKIES"},
        }
        _copy_members(params, app, self.app_shape, _APP_SKIP)
        if app["repository"]:
            app["repositoryCloneMethod"] = "TOKEN" if params.get("accessToken") else "SSH"
        record = {"account": caller.account, "region": caller.region, "app": app, "branches": {}, "domains": {}}
        self.store.data["apps"][app_id] = record
        return {"app": app}

    def get_app(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        return {"app": self.store.record(caller, params["appId"])["app"]}

    def list_apps(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        apps = [record["app"] for record in self.store.apps_of(caller)]
        page, token = paginate(apps, params, default_size=100)
        return {"apps": page, **({"nextToken": token} if token else {})}

    def update_app(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        app = self.store.record(caller, params["appId"])["app"]
        _copy_members(params, app, self.app_shape, _APP_SKIP)
        app["updateTime"] = now()
        return {"app": app}

    def delete_app(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        record = self.store.record(caller, params["appId"])
        del self.store.data["apps"][params["appId"]]
        return {"app": record["app"]}

    # branches

    def _branch(self, caller: Caller, params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        record = self.store.record(caller, params["appId"])
        branch = record["branches"].get(params["branchName"])
        if branch is None:
            raise not_found(f"Branch {params['branchName']} not found for app {params['appId']}.")
        return record, branch

    def create_branch(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        record = self.store.record(caller, params["appId"])
        name = params["branchName"]
        if name in record["branches"]:
            raise bad_request(f"Branch {name} already exists for app {params['appId']}.")
        stamp = now()
        branch: dict[str, Any] = {
            "branchArn": f"{record['app']['appArn']}/branches/{name}",
            "branchName": name,
            "description": "",
            "tags": dict(params.get("tags") or {}),
            "stage": "NONE",  # what the service reports when no stage was given
            "displayName": name.replace("/", "-"),
            "enableNotification": False,
            "createTime": stamp,
            "updateTime": stamp,
            "environmentVariables": {},
            "enableAutoBuild": True,
            "enableSkewProtection": False,
            "customDomains": [],
            "framework": "",
            # no build pipeline here: every branch counts as deployed once, like a live app
            "activeJobId": "1",
            "totalNumberOfJobs": "1",
            "enableBasicAuth": False,
            "enablePerformanceMode": False,
            "ttl": "5",
            "enablePullRequestPreview": False,
        }
        _copy_members(params, branch, self.branch_shape, _BRANCH_SKIP)
        record["branches"][name] = branch
        self._track_production(record, branch)
        return {"branch": branch}

    @staticmethod
    def _track_production(record: dict[str, Any], branch: dict[str, Any]) -> None:
        app = record["app"]
        if branch.get("stage") == "PRODUCTION":
            app["productionBranch"] = {
                "branchName": branch["branchName"],
                "status": "SUCCEED",
                "lastDeployTime": branch["updateTime"],
            }
        elif app.get("productionBranch", {}).get("branchName") == branch["branchName"]:
            app.pop("productionBranch")

    def get_branch(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        return {"branch": self._branch(caller, params)[1]}

    def list_branches(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        record = self.store.record(caller, params["appId"])
        page, token = paginate(list(record["branches"].values()), params, default_size=50)
        return {"branches": page, **({"nextToken": token} if token else {})}

    def update_branch(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        record, branch = self._branch(caller, params)
        _copy_members(params, branch, self.branch_shape, _BRANCH_SKIP)
        branch["updateTime"] = now()
        self._track_production(record, branch)
        return {"branch": branch}

    def delete_branch(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        record, branch = self._branch(caller, params)
        del record["branches"][params["branchName"]]
        if record["app"].get("productionBranch", {}).get("branchName") == branch["branchName"]:
            record["app"].pop("productionBranch")
        for domain in record["domains"].values():
            domain["subDomains"] = [
                s for s in domain["subDomains"] if s["subDomainSetting"]["branchName"] != branch["branchName"]
            ]
        return {"branch": branch}

    # domain associations

    def create_domain_association(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        record = self.store.record(caller, params["appId"])
        domain_name = params["domainName"]
        if domain_name in record["domains"]:
            raise bad_request(f"Domain {domain_name} is already associated with app {params['appId']}.")
        for setting in params["subDomainSettings"]:
            if setting["branchName"] not in record["branches"]:
                raise not_found(f"Branch {setting['branchName']} not found for app {params['appId']}.")
        token = hashlib.sha256(f"{record['app']['appArn']}/{domain_name}".encode()).hexdigest()
        verification = f"_{token[:32]}.{domain_name}. CNAME _{token[32:]}.acm-validations.aws."
        certificate: dict[str, Any] = {"type": "AMPLIFY_MANAGED"}
        certificate.update(params.get("certificateSettings") or {})
        certificate["certificateVerificationDNSRecord"] = verification
        domain: dict[str, Any] = {
            "domainAssociationArn": f"{record['app']['appArn']}/domains/{domain_name}",
            "domainName": domain_name,
            "enableAutoSubDomain": bool(params.get("enableAutoSubDomain", False)),
            "autoSubDomainCreationPatterns": list(params.get("autoSubDomainCreationPatterns") or []),
            "autoSubDomainIAMRole": params.get("autoSubDomainIAMRole", ""),
            # the sandbox's DNS is ours: verification and the certificate succeed at once
            "domainStatus": "AVAILABLE",
            "updateStatus": "UPDATE_COMPLETE",
            "statusReason": "",
            "certificateVerificationDNSRecord": verification,
            "subDomains": [self._sub_domain(record, domain_name, s) for s in params["subDomainSettings"]],
            "certificate": certificate,
        }
        record["domains"][domain_name] = domain
        return {"domainAssociation": domain}

    @staticmethod
    def _sub_domain(record: dict[str, Any], domain_name: str, setting: dict[str, Any]) -> dict[str, Any]:
        prefix, branch_name = setting["prefix"], setting["branchName"]
        target = f"{branch_name.replace('/', '-')}.{record['app']['defaultDomain']}"
        fqdn = f"{prefix}.{domain_name}" if prefix else domain_name
        branch = record["branches"][branch_name]
        if fqdn not in branch["customDomains"]:
            branch["customDomains"].append(fqdn)
        return {
            "subDomainSetting": {"prefix": prefix, "branchName": branch_name},
            "verified": True,
            "dnsRecord": f"{prefix} CNAME {target}".strip(),
        }

    def _domain(self, caller: Caller, params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        record = self.store.record(caller, params["appId"])
        domain = record["domains"].get(params["domainName"])
        if domain is None:
            raise not_found(f"Domain {params['domainName']} not found for app {params['appId']}.")
        return record, domain

    def get_domain_association(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        return {"domainAssociation": self._domain(caller, params)[1]}

    def list_domain_associations(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        record = self.store.record(caller, params["appId"])
        page, token = paginate(list(record["domains"].values()), params, default_size=50)
        return {"domainAssociations": page, **({"nextToken": token} if token else {})}

    def delete_domain_association(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        record, domain = self._domain(caller, params)
        del record["domains"][params["domainName"]]
        suffix = params["domainName"]
        for branch in record["branches"].values():
            branch["customDomains"] = [
                d for d in branch["customDomains"] if d != suffix and not d.endswith("." + suffix)
            ]
        return {"domainAssociation": domain}

    # tags (apps and branches carry them)

    def _taggable(self, caller: Caller, arn: str) -> dict[str, Any]:
        match = re.fullmatch(r"arn:aws:amplify:([a-z0-9-]+):(\d{12}):apps/([^/]+)(?:/branches/(.+))?", arn)
        if not match or (match.group(1), match.group(2)) != (caller.region, caller.account):
            raise AmplifyError("ResourceNotFoundException", f"Resource {arn} not found.")
        record = self.store.data["apps"].get(match.group(3))
        if record is None or record["account"] != caller.account or record["region"] != caller.region:
            raise AmplifyError("ResourceNotFoundException", f"Resource {arn} not found.")
        if match.group(4) is None:
            return record["app"]
        branch = record["branches"].get(match.group(4))
        if branch is None:
            raise AmplifyError("ResourceNotFoundException", f"Resource {arn} not found.")
        return branch

    def list_tags_for_resource(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        return {"tags": dict(self._taggable(caller, params["resourceArn"]).get("tags", {}))}

    def tag_resource(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        resource = self._taggable(caller, params["resourceArn"])
        resource.setdefault("tags", {}).update(params["tags"])
        return {}

    def untag_resource(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        resource = self._taggable(caller, params["resourceArn"])
        for key in params["tagKeys"]:
            resource.setdefault("tags", {}).pop(key, None)
        return {}


def paginate(items: list[Any], params: dict[str, Any], default_size: int) -> tuple[list[Any], str | None]:
    """Offset pagination behind an opaque token; a token we did not issue is a 400."""
    start = 0
    if params.get("nextToken"):
        try:
            start = int(json.loads(base64.urlsafe_b64decode(params["nextToken"].encode()))["offset"])
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise bad_request("Invalid nextToken.") from None
    size = params.get("maxResults") or default_size
    page = items[start : start + size]
    end = start + len(page)
    if end >= len(items):
        return page, None
    return page, base64.urlsafe_b64encode(json.dumps({"offset": end}).encode()).decode()


# --- the ASGI app -------------------------------------------------------------------------------

_MUTATING = {"POST", "DELETE", "PUT", "PATCH"}


def build_app(
    state_path: Path, account_id: str = DEFAULT_ACCOUNT_ID, default_region: str = DEFAULT_REGION
) -> Starlette:
    """The emulator as a Starlette app; state lives in `state_path` (created on first change)."""
    model = load_service_model()
    routes = build_routes(model)
    store = Store(Path(state_path))
    handlers = Amplify(store, model).handlers()

    async def health(_: Request) -> Response:
        return JSONResponse({"status": "ok", "apps": len(store.data["apps"])})

    async def dispatch(request: Request) -> Response:
        raw_path = request.scope.get("raw_path", request.url.path.encode()).decode("latin-1").split("?", 1)[0]
        body = await request.body()
        # everything below is synchronous: one request mutates and saves the state at a time
        try:
            route, labels = _match(routes, request.method, raw_path)
            handler = handlers.get(route.operation.name)
            if handler is None:
                raise bad_request(f"The sandbox Amplify emulator does not implement {route.operation.name}.")
            params = decode_params(route.operation, labels, request.url.query, body)
            if route.operation.input_shape is not None:
                validate_input(route.operation.input_shape, params)
            caller = caller_from(request, account_id, default_region)
            result = handler(caller, params)
            if request.method in _MUTATING:
                store.save()
        except AmplifyError as exc:
            log.info("%s %s -> %s", request.method, raw_path, exc.code)
            return exc.response()
        log.info("%s %s -> %s", request.method, raw_path, route.operation.name)
        return JSONResponse(result, status_code=200)

    return Starlette(
        routes=[
            Route("/_sandbox/health", health, methods=["GET"]),
            Route("/{path:path}", dispatch, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
        ]
    )


def _match(routes: list[RouteSpec], method: str, raw_path: str) -> tuple[RouteSpec, dict[str, str]]:
    path_matched = False
    for route in routes:
        found = route.pattern.match(raw_path)
        if found:
            path_matched = True
            if route.method == method:
                return route, found.groupdict()
    if path_matched:
        raise bad_request(f"Method {method} is not allowed on {raw_path}.")
    raise AmplifyError("NotFoundException", f"No Amplify operation at {method} {raw_path}.")


def main(argv: list[str] | None = None) -> None:
    import uvicorn  # imported here: building the app for tests needs no server

    parser = argparse.ArgumentParser(prog="python -m sandbox.amplify", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--state", type=Path, required=True, help="JSON file holding the emulator's state")
    parser.add_argument("--account-id", default=DEFAULT_ACCOUNT_ID)
    parser.add_argument("--region", default=DEFAULT_REGION, help="used when a request carries no SigV4 scope")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    app = build_app(args.state, account_id=args.account_id, default_region=args.region)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=False)


if __name__ == "__main__":
    main()
