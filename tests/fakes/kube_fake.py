#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""kube_fake: a strict, in-memory Kubernetes API server for EMP's tests.

No cluster can run on the machines EMP is tested on, so this program stands in for one, for the
subset of the Kubernetes REST API that EMP's Kubernetes backend uses, and it is as strict as the
real API server there: every request body is checked against the official JSON schemas of
Kubernetes 1.35 (tests/fakes/k8s-schemas/), names, labels and the usual fields are validated with
the messages that the API server uses, errors come back as the Status objects that the API server
returns, resourceVersions are checked, and every object it returns is checked against the same
schemas. A body that the real server would refuse is refused here too and recorded as a violation
(GET /_fake/violations); a test should fail when that list is not empty.

Run with Debian's /usr/bin/python3 (standard library, python3-jsonschema, python3-yaml,
python3-cryptography):

    kube_fake.py --state-dir DIR --token-file F [--host 127.0.0.1] [--port 0]

Once it serves, it writes DIR/ready.json:
    {"url": "https://127.0.0.1:PORT", "ca": "DIR/ca.crt", "token_file": F,
     "kubeconfig": "DIR/kubeconfig", "client_cert": ..., "client_key": ..., "pid": ...}
It logs one line per request to stderr and stops cleanly on SIGTERM or SIGINT.

See tests/fakes/README.md for the API it serves, the control API under /_fake/, and the ways in
which it knowingly differs from a real API server.
"""

import argparse
import base64
import bisect
import copy
import datetime
import fractions
import hashlib
import heapq
import http.server
import ipaddress
import json
import os
import random
import re
import signal
import socket
import socketserver
import ssl
import sys
import threading
import time
import urllib.parse
import uuid

import jsonschema
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
SCHEMA_DIR = os.path.join(HERE, "k8s-schemas")
OPENAPI_FILE = os.path.join(SCHEMA_DIR, "k8s-v1.35-openapi-v2-subset.json")

SERVER_VERSION = {
    "major": "1",
    "minor": "35",
    "emulationMajor": "1",
    "emulationMinor": "35",
    "minCompatibilityMajor": "1",
    "minCompatibilityMinor": "34",
    "gitVersion": "v1.35.0",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2025-12-17T00:00:00Z",
    "goVersion": "go1.25.5",
    "compiler": "gc",
    "platform": "linux/amd64",
}


# ----------------------------------------------------------------------------------------------
# Small helpers


def now_rfc3339(t=None):
    t = time.time() if t is None else t
    return datetime.datetime.fromtimestamp(int(t), datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(s):
    try:
        return datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc).timestamp()
    except (TypeError, ValueError):
        return None


def deep(obj):
    """A deep copy of a JSON value (faster than copy.deepcopy for plain JSON)."""
    return json.loads(json.dumps(obj))


def go_quote(s):
    """Go's %q of a string."""
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif o < 0x20 or o == 0x7F:
            out.append("\\x%02x" % o)
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def go_value(v):
    """Roughly what Go's field.Error.ErrorBody prints for a bad value."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, str):
        return go_quote(v)
    if isinstance(v, dict) and all(isinstance(x, str) for x in v.values()):
        return "map[string]string{" + ", ".join("%s:%s" % (go_quote(k), go_quote(v[k])) for k in sorted(v)) + "}"
    if isinstance(v, list) and all(isinstance(x, str) for x in v):
        return "[]string{" + ", ".join(go_quote(x) for x in v) + "}"
    return json.dumps(v, sort_keys=True)


SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # k8s.io/apimachinery/pkg/util/rand


def safe_encode(data, length):
    n = int.from_bytes(hashlib.sha256(data).digest()[:8], "big")
    out = []
    for _ in range(length):
        n, r = divmod(n, len(SAFE_ALPHABET))
        out.append(SAFE_ALPHABET[r])
    return "".join(out)


def rand_suffix(n=5):
    return "".join(random.choice(SAFE_ALPHABET) for _ in range(n))


def template_hash(template):
    return safe_encode(json.dumps(template, sort_keys=True).encode(), 10)


# ----------------------------------------------------------------------------------------------
# Quantities (k8s.io/apimachinery/pkg/api/resource)

QUANTITY_RE = re.compile(r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$")
QUANTITY_ERR = "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
BIN_SUFFIX = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
DEC_SUFFIX = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}


def parse_quantity(q):
    """Returns (value as Fraction, format) where format is 'BinarySI', 'DecimalSI' or 'DecimalExponent'."""
    if isinstance(q, bool):
        raise ValueError(QUANTITY_ERR)
    if isinstance(q, (int, float)):
        q = repr(q) if isinstance(q, float) else str(q)
    if not isinstance(q, str):
        raise ValueError(QUANTITY_ERR)
    m = QUANTITY_RE.match(q)
    if not m:
        raise ValueError(QUANTITY_ERR)
    num, suffix = m.group(1), m.group(2)
    if num.count(".") > 1 or num.strip("+-") in ("", "."):
        raise ValueError(QUANTITY_ERR)
    try:
        value = fractions.Fraction(num)
    except (ValueError, ZeroDivisionError):
        raise ValueError(QUANTITY_ERR) from None
    if suffix in BIN_SUFFIX:
        return value * (1024 ** BIN_SUFFIX[suffix]), "BinarySI"
    if suffix in DEC_SUFFIX:
        return value * fractions.Fraction(10) ** DEC_SUFFIX[suffix], "DecimalSI"
    em = re.match(r"^[eE]([-+]?[0-9]+)$", suffix)
    if em:
        return value * fractions.Fraction(10) ** int(em.group(1)), "DecimalExponent"
    raise ValueError(QUANTITY_ERR)


def canonical_quantity(q):
    """The string the API server stores for a quantity (Quantity.String(), simplified)."""
    value, fmt = parse_quantity(q)
    # at most nano precision, rounded up (away from zero)
    scaled = value * 10**9
    if scaled.denominator != 1:
        scaled = fractions.Fraction(-((-scaled.numerator) // scaled.denominator)) if scaled > 0 else \
            fractions.Fraction(scaled.numerator // scaled.denominator)
    value = scaled / 10**9
    sign = "-" if value < 0 else ""
    a = abs(value)
    if fmt == "BinarySI":
        if a < 1024 or a.denominator != 1:
            fmt = "DecimalSI"
        else:
            n = a.numerator
            k = 0
            while k < 6 and n % 1024 == 0:
                n //= 1024
                k += 1
            return sign + str(n) + ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][k]
    if a == 0:
        return "0"
    e = -9
    while e < 18 and (a / fractions.Fraction(10) ** (e + 3)).denominator == 1:
        e += 3
    mant = a / fractions.Fraction(10) ** e
    if fmt == "DecimalExponent":
        return sign + str(mant.numerator) + ("e%d" % e if e else "")
    return sign + str(mant.numerator) + {-9: "n", -6: "u", -3: "m", 0: "", 3: "k", 6: "M", 9: "G", 12: "T", 15: "P", 18: "E"}[e]


# ----------------------------------------------------------------------------------------------
# Schemas: the official standalone-strict schemas, and the same transformation applied to the
# OpenAPI subset for the kinds that have no standalone file here (Pod, PersistentVolumeClaim, lists)


def openapi_to_standalone(definitions, name):
    """openapi2jsonschema --expanded --kubernetes --stand-alone --strict for one definition.

    This reproduces tests/fakes/k8s-schemas/*.json byte for byte (as parsed JSON) from the OpenAPI
    subset; test_kube_fake.py checks that it does, so the derived Pod and PVC schemas are made the
    same way as the official ones."""
    defs = copy.deepcopy(definitions)
    defs["io.k8s.apimachinery.pkg.util.intstr.IntOrString"] = {"oneOf": [{"type": "string"}, {"type": "integer"}]}
    defs["io.k8s.apimachinery.pkg.api.resource.Quantity"] = {"oneOf": [{"type": "string"}, {"type": "number"}]}
    for td in defs.values():
        for gvk in td.get("x-kubernetes-group-version-kind", []):
            props = td.get("properties", {})
            if "apiVersion" in props:
                av = gvk["group"] + "/" + gvk["version"] if gvk["group"] else gvk["version"]
                enum = props["apiVersion"].setdefault("enum", [])
                if av not in enum:
                    enum.append(av)
            if "kind" in props:
                enum = props["kind"].setdefault("enum", [])
                if gvk["kind"] not in enum:
                    enum.append(gvk["kind"])

    def inline(x):
        if isinstance(x, dict):
            if "$ref" in x:
                return inline(defs[x["$ref"].split("/")[-1]])
            return {k: inline(v) for k, v in x.items()}
        if isinstance(x, list):
            return [inline(v) for v in x]
        return x

    spec = inline(defs[name])

    def strict(x):
        if isinstance(x, dict):
            if "properties" in x and "additionalProperties" not in x:
                x["additionalProperties"] = False
            for v in x.values():
                strict(v)
        elif isinstance(x, list):
            for v in x:
                strict(v)

    strict(spec)

    def nullable(x, keep):
        if isinstance(x, dict):
            if isinstance(x.get("type"), str) and x["type"] != "null" and not keep:
                x["type"] = [x["type"], "null"]
            required = set(x.get("required", []))
            for k, v in x.items():
                if k == "properties":
                    for pk, pv in v.items():
                        nullable(pv, pk in required)
                elif isinstance(v, (dict, list)):
                    nullable(v, False)
        elif isinstance(x, list):
            for v in x:
                nullable(v, False)

    nullable(spec, True)
    spec["$schema"] = "http://json-schema.org/schema#"
    spec.setdefault("type", "object")
    spec["additionalProperties"] = False
    return spec


OFFICIAL_SCHEMA_FILES = {
    "Namespace": "namespace-v1.json",
    "Service": "service-v1.json",
    "Deployment": "deployment-apps-v1.json",
    "StatefulSet": "statefulset-apps-v1.json",
    "Scale": "scale-autoscaling-v1.json",
    "Status": "status-meta-v1.json",
}
DERIVED_SCHEMAS = {
    "Pod": "io.k8s.api.core.v1.Pod",
    "PersistentVolumeClaim": "io.k8s.api.core.v1.PersistentVolumeClaim",
    "DeleteOptions": "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions",
}
LIST_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta"


class Schemas:
    def __init__(self):
        with open(OPENAPI_FILE) as f:
            self.openapi = json.load(f)
        self.schemas = {}
        for kind, fn in OFFICIAL_SCHEMA_FILES.items():
            with open(os.path.join(SCHEMA_DIR, fn)) as f:
                self.schemas[kind] = json.load(f)
        for kind, name in DERIVED_SCHEMAS.items():
            self.schemas[kind] = openapi_to_standalone(self.openapi["definitions"], name)
        self.list_meta = openapi_to_standalone(self.openapi["definitions"], LIST_META)
        self.validators = {}
        self.lock = threading.Lock()

    def validator(self, kind):
        with self.lock:
            v = self.validators.get(kind)
            if v is None:
                if kind.endswith("List") and kind[:-4] in self.schemas:
                    item_kind = kind[:-4]
                    group_version = self.schemas[item_kind]["properties"]["apiVersion"]["enum"][0]
                    # the envelope; items were checked when they were stored (same objects)
                    schema = {
                        "type": "object",
                        "required": ["items"],
                        "additionalProperties": False,
                        "properties": {
                            "apiVersion": {"type": "string", "enum": [group_version]},
                            "kind": {"type": "string", "enum": [kind]},
                            "metadata": self.list_meta,
                            "items": {"type": "array", "items": {"type": "object"}},
                        },
                    }
                else:
                    schema = self.schemas[kind]
                v = jsonschema.Draft4Validator(schema)
                self.validators[kind] = v
            return v

    def errors(self, kind, obj):
        return sorted(self.validator(kind).iter_errors(obj), key=lambda e: list(e.absolute_path).__repr__())


def json_path(path_elems):
    """A jsonschema error path as Kubernetes prints field paths: spec.containers[0].name."""
    out = ""
    for p in path_elems:
        if isinstance(p, int):
            out += "[%d]" % p
        else:
            out += ("." if out else "") + p
    return out


# ----------------------------------------------------------------------------------------------
# Errors: metav1.Status exactly as k8s.io/apimachinery/pkg/api/errors builds them


class ApiError(Exception):
    def __init__(self, status, headers=None, violation=None):
        super().__init__(status.get("message", ""))
        self.status = status
        self.code = status["code"]
        self.headers = headers or {}
        self.violation = violation  # a kind of violation to record ("invalid", "bad_request", ...)
        self.errors = None  # what to record with it, when not the Status' causes


def status_obj(code, reason, message, details=None):
    s = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure"}
    if message:
        s["message"] = message
    if reason:
        s["reason"] = reason
    if details:
        s["details"] = details
    s["code"] = code
    return s


def details(name, res, kind=None, uid=None, causes=None, retry=None):
    d = {}
    if name:
        d["name"] = name
    if res.group:
        d["group"] = res.group
    d["kind"] = kind or res.plural
    if uid:
        d["uid"] = uid
    if causes:
        d["causes"] = causes
    if retry:
        d["retryAfterSeconds"] = retry
    return d


def qualified_resource(res):
    return res.plural + ("." + res.group if res.group else "")


def err_not_found(res, name):
    return ApiError(status_obj(404, "NotFound", '%s "%s" not found' % (qualified_resource(res), name), details(name, res)))


def err_already_exists(res, name):
    return ApiError(status_obj(409, "AlreadyExists", '%s "%s" already exists' % (qualified_resource(res), name), details(name, res)))


OPTIMISTIC_LOCK_MSG = "the object has been modified; please apply your changes to the latest version and try again"


def err_conflict(res, name, msg=OPTIMISTIC_LOCK_MSG):
    return ApiError(status_obj(409, "Conflict", 'Operation cannot be fulfilled on %s "%s": %s' % (qualified_resource(res), name, msg),
                               details(name, res)))


def err_bad_request(message, violation="bad_request"):
    return ApiError(status_obj(400, "BadRequest", message), violation=violation)


def err_expired(message):
    return ApiError(status_obj(410, "Expired", message))


def err_internal(message, violation=None):
    return ApiError(status_obj(500, "InternalError", "Internal error occurred: " + message, {"causes": [{"message": message}]}),
                    violation=violation)


def err_method_not_allowed():
    return ApiError(status_obj(405, "MethodNotAllowed", "the server does not allow this method on the requested resource"),
                    violation="unsupported")


class FieldErrors:
    """field.ErrorList"""

    TYPES = {
        "Required": ("FieldValueRequired", "Required value"),
        "Invalid": ("FieldValueInvalid", "Invalid value"),
        "NotSupported": ("FieldValueNotSupported", "Unsupported value"),
        "Duplicate": ("FieldValueDuplicate", "Duplicate value"),
        "Forbidden": ("FieldValueForbidden", "Forbidden"),
        "NotFound": ("FieldValueNotFound", "Not found"),
        "TooLong": ("FieldValueTooLong", "Too long"),
    }

    def __init__(self):
        self.errs = []

    def add(self, typ, field, value=None, detail=""):
        reason, text = self.TYPES[typ]
        if typ in ("Required", "Forbidden", "TooLong"):
            body = text
        else:
            body = "%s: %s" % (text, go_value(value))
        if detail:
            body += ": " + detail
        self.errs.append({"reason": reason, "message": body, "field": field})

    def invalid(self, field, value, detail):
        self.add("Invalid", field, value, detail)

    def required(self, field, detail=""):
        self.add("Required", field, None, detail)

    def forbidden(self, field, detail):
        self.add("Forbidden", field, None, detail)

    def not_supported(self, field, value, supported):
        self.add("NotSupported", field, value, "supported values: " + ", ".join(go_quote(s) for s in supported))

    def duplicate(self, field, value):
        self.add("Duplicate", field, value)

    def not_found(self, field, value):
        self.add("NotFound", field, value)

    def __bool__(self):
        return bool(self.errs)


def err_invalid(kind, group, name, errs):
    causes = []
    seen = set()
    msgs = []
    for e in errs.errs if isinstance(errs, FieldErrors) else errs:
        causes.append({"reason": e["reason"], "message": e["message"], "field": e["field"]})
        m = "%s: %s" % (e["field"], e["message"]) if e["field"] else e["message"]
        if m not in seen:
            seen.add(m)
            msgs.append(m)
    qk = kind + ("." + group if group else "")
    agg = msgs[0] if len(msgs) == 1 else "[" + ", ".join(msgs) + "]"
    d = {}
    if name:
        d["name"] = name
    if group:
        d["group"] = group
    d["kind"] = kind
    d["causes"] = causes
    return ApiError(status_obj(422, "Invalid", '%s "%s" is invalid: %s' % (qk, name, agg), d), violation="invalid")


# ----------------------------------------------------------------------------------------------
# Name and label rules (k8s.io/apimachinery/pkg/util/validation)

DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_SUBDOMAIN_FMT = DNS1123_LABEL_FMT + r"(\." + DNS1123_LABEL_FMT + ")*"
DNS1035_LABEL_FMT = "[a-z]([-a-z0-9]*[a-z0-9])?"
QUALIFIED_NAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
LABEL_VALUE_FMT = "(" + QUALIFIED_NAME_FMT + ")?"
RE_DNS1123_LABEL = re.compile("^" + DNS1123_LABEL_FMT + "$")
RE_DNS1123_SUBDOMAIN = re.compile("^" + DNS1123_SUBDOMAIN_FMT + "$")
RE_DNS1035_LABEL = re.compile("^" + DNS1035_LABEL_FMT + "$")
RE_QUALIFIED_NAME = re.compile("^" + QUALIFIED_NAME_FMT + "$")
RE_LABEL_VALUE = re.compile("^" + LABEL_VALUE_FMT + "$")


def regex_error(msg, fmt, *examples):
    if not examples:
        return msg + " (regex used for validation is '" + fmt + "')"
    s = msg + " (e.g. "
    for i, e in enumerate(examples):
        if i > 0:
            s += " or "
        s += "'" + e + "', "
    return s + "regex used for validation is '" + fmt + "')"


MSG_DNS1123_LABEL = regex_error("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must "
                                "start and end with an alphanumeric character", DNS1123_LABEL_FMT, "my-name", "123-abc")
MSG_DNS1123_SUBDOMAIN = regex_error("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
                                    "and must start and end with an alphanumeric character", DNS1123_SUBDOMAIN_FMT, "example.com")
MSG_DNS1035_LABEL = regex_error("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
                                "alphabetic character, and end with an alphanumeric character", DNS1035_LABEL_FMT, "my-name", "abc-123")
MSG_QUALIFIED_NAME = regex_error("must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
                                 "alphanumeric character", QUALIFIED_NAME_FMT, "MyName", "my.name", "123-abc")
MSG_LABEL_VALUE = regex_error("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and "
                              "must start and end with an alphanumeric character", LABEL_VALUE_FMT, "MyValue", "my_value", "12345")


def max_len_error(n):
    return "must be no more than %d characters" % n


def pattern_errors(v, max_len, regex, message):
    """What Kubernetes says of v against one of its name rules: too long, not matching, or both."""
    errs = []
    if len(v) > max_len:
        errs.append(max_len_error(max_len))
    if not regex.match(v):
        errs.append(message)
    return errs


def is_dns1123_label(v):
    return pattern_errors(v, 63, RE_DNS1123_LABEL, MSG_DNS1123_LABEL)


def is_dns1123_subdomain(v):
    return pattern_errors(v, 253, RE_DNS1123_SUBDOMAIN, MSG_DNS1123_SUBDOMAIN)


def is_dns1035_label(v):
    return pattern_errors(v, 63, RE_DNS1035_LABEL, MSG_DNS1035_LABEL)


NAME_RULES = {"dns1123label": is_dns1123_label, "dns1123subdomain": is_dns1123_subdomain, "dns1035label": is_dns1035_label}


def name_errors(rule, name, prefix=False):
    if prefix and name.endswith("-"):  # maskTrailingDash
        name = name[:-1] + "a" if len(name) > 1 else "a"
    return NAME_RULES[rule](name)


def is_qualified_name(v):
    errs = []
    parts = v.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs.append("prefix part " + "must be non-empty")
        else:
            errs.extend("prefix part " + m for m in is_dns1123_subdomain(prefix))
    else:
        return ["a qualified name " + MSG_QUALIFIED_NAME + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"]
    if not name:
        errs.append("name part must be non-empty")
    elif len(name) > 63:
        errs.append("name part " + max_len_error(63))
    if not RE_QUALIFIED_NAME.match(name):
        errs.append("name part " + MSG_QUALIFIED_NAME)
    return errs


def is_label_value(v):
    return pattern_errors(v, 63, RE_LABEL_VALUE, MSG_LABEL_VALUE)


def validate_labels(labels, field, errs):
    if not isinstance(labels, dict):
        return
    for k in sorted(labels):
        for m in is_qualified_name(k):
            errs.invalid(field, k, m)
        v = labels[k]
        if isinstance(v, str):
            for m in is_label_value(v):
                errs.invalid(field, v, m)


def validate_annotations(ann, field, errs):
    if not isinstance(ann, dict):
        return
    total = 0
    for k in sorted(ann):
        for m in is_qualified_name(k.lower()):
            errs.invalid(field, k, m)
        total += len(k) + len(ann[k] or "")
    if total > 256 * 1024:
        errs.add("TooLong", field, None, "may not be more than 262144 bytes")


RE_PORT_NAME_CHARSET = re.compile("^[-a-z0-9]+$")
RE_PORT_NAME_ONE_LETTER = re.compile(".*[a-z].*")


def is_valid_port_name(p):
    errs = []
    if len(p) > 15:
        errs.append(max_len_error(15))
    if not RE_PORT_NAME_CHARSET.match(p):
        errs.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if not RE_PORT_NAME_ONE_LETTER.match(p):
        errs.append("must contain at least one letter (a-z)")
    if "--" in p:
        errs.append("must not contain consecutive hyphens")
    if p and (p[0] == "-" or p[-1] == "-"):
        errs.append("must not begin or end with a hyphen")
    return errs


PORT_RANGE_MSG = "must be between 1 and 65535, inclusive"


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


# ----------------------------------------------------------------------------------------------
# Resources served


class Res:
    def __init__(self, plural, group, kind, namespaced, short, verbs, name_rule, fields=(), subresources=()):
        self.plural = plural
        self.group = group
        self.version = "v1"
        self.kind = kind
        self.namespaced = namespaced
        self.short = short
        self.verbs = verbs
        self.name_rule = name_rule
        self.fields = ("metadata.name",) + (("metadata.namespace",) if namespaced else ()) + tuple(fields)
        self.subresources = subresources
        self.api_version = group + "/v1" if group else "v1"
        self.singular = kind.lower()

    def prefix(self):
        return "/apis/%s/v1" % self.group if self.group else "/api/v1"


WRITE_VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]
RESOURCES = {
    "namespaces": Res("namespaces", "", "Namespace", False, ["ns"], WRITE_VERBS, "dns1123label", ("status.phase",)),
    "pods": Res("pods", "", "Pod", True, ["po"], ["delete", "get", "list", "watch"], "dns1123subdomain",
                ("spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName", "status.phase",
                 "status.podIP", "status.nominatedNodeName")),
    "services": Res("services", "", "Service", True, ["svc"], WRITE_VERBS, "dns1035label", ("spec.clusterIP", "spec.type")),
    "persistentvolumeclaims": Res("persistentvolumeclaims", "", "PersistentVolumeClaim", True, ["pvc"],
                                  ["delete", "get", "list", "watch"], "dns1123subdomain"),
    "deployments": Res("deployments", "apps", "Deployment", True, ["deploy"], WRITE_VERBS, "dns1123subdomain", (), ("scale",)),
    "statefulsets": Res("statefulsets", "apps", "StatefulSet", True, ["sts"], WRITE_VERBS, "dns1123label", (), ("scale",)),
}
BY_KIND = {r.kind: r for r in RESOURCES.values()}
WORKLOADS = ("deployments", "statefulsets")


# ----------------------------------------------------------------------------------------------
# Label selectors: the grammar of k8s.io/apimachinery/pkg/labels/selector.go


class SelectorError(Exception):
    pass


_SEL_TOKENS = {")": "CP", ",": "COMMA", "!": "NOT", "==": "DEQ", "=": "EQ", ">": "GT", "in": "IN", "<": "LT", "!=": "NEQ",
               "notin": "NOTIN", "(": "OP"}
_SEL_SPECIAL = set("=!(),><")


def _sel_lex(s):
    toks = []
    i = 0
    n = len(s)
    while True:
        while i < n and s[i] in " \t\r\n":
            i += 1
        if i >= n:
            toks.append(("END", ""))
            return toks
        ch = s[i]
        if ch in _SEL_SPECIAL:
            buf = ""
            last = None
            while i < n and s[i] in _SEL_SPECIAL:
                buf += s[i]
                if buf in _SEL_TOKENS:
                    last = (_SEL_TOKENS[buf], buf)
                    i += 1
                elif last is not None:
                    break
                else:
                    i += 1
            if last is None:
                toks.append(("ERR", "error expected: keyword found '%s'" % buf))
            else:
                toks.append(last)
        else:
            j = i
            while j < n and s[j] not in _SEL_SPECIAL and s[j] not in " \t\r\n":
                j += 1
            lit = s[i:j]
            i = j
            toks.append((_SEL_TOKENS.get(lit, "ID") if lit in ("in", "notin") else "ID", lit))


def _check_key(k):
    errs = is_qualified_name(k)
    if errs:
        raise SelectorError("key: Invalid value: %s: %s" % (go_quote(k), "; ".join(errs)))


def _check_value(v):
    errs = is_label_value(v)
    if errs:
        raise SelectorError("values[0]: Invalid value: %s: %s" % (go_quote(v), "; ".join(errs)))


def parse_label_selector(s):
    """Returns a list of (key, op, values); op in =, !=, in, notin, exists, !, gt, lt."""
    toks = _sel_lex(s)
    pos = [0]

    def peek(values_mode=True):
        t = toks[pos[0]]
        if values_mode and t[0] in ("IN", "NOTIN"):
            return ("ID", t[1])
        return t

    def take(values_mode=True):
        t = peek(values_mode)
        pos[0] += 1
        return t

    reqs = []

    def requirement():
        tok, lit = take()
        op = None
        if tok == "NOT":
            op = "!"
            tok, lit = take()
        if tok != "ID":
            raise SelectorError("found '%s', expected: identifier" % lit)
        key = lit
        _check_key(key)
        if peek()[0] in ("END", "COMMA"):
            return (key, op or "exists", [])
        if op == "!":
            return (key, "!", [])
        tok, lit = take(values_mode=False)
        ops = {"IN": "in", "NOTIN": "notin", "EQ": "=", "DEQ": "=", "NEQ": "!=", "GT": "gt", "LT": "lt"}
        if tok not in ops:
            raise SelectorError("found '%s', expected: %s" % (lit, ", ".join(["=", "!=", "==", "in", "notin", "gt", "lt"])))
        op = ops[tok]
        if op in ("in", "notin"):
            tok, lit = take()
            if tok != "OP":
                raise SelectorError("found '%s' expected: '('" % lit)
            tok, lit = peek()
            if tok == "CP":
                take()
                values = [""]
            elif tok in ("ID", "COMMA"):
                values = []
                while True:  # parseIdentifiersList
                    tok, lit = take()
                    if tok == "ID":
                        values.append(lit)
                        tok2, lit2 = peek()
                        if tok2 == "COMMA":
                            continue
                        if tok2 == "CP":
                            break
                        raise SelectorError("found '%s', expected: ',' or ')'" % lit2)
                    elif tok == "COMMA":
                        if not values:
                            values.append("")
                        tok2 = peek()[0]
                        if tok2 == "CP":
                            values.append("")
                            break
                        if tok2 == "COMMA":
                            take()
                            values.append("")
                    else:
                        raise SelectorError("found '%s', expected: ',', or identifier" % lit)
                tok, lit = take()
                if tok != "CP":
                    raise SelectorError("found '%s', expected: ')'" % lit)
            else:
                raise SelectorError("found '%s', expected: ',', ')' or identifier" % lit)
        else:
            tok, lit = peek()
            if tok in ("END", "COMMA"):
                values = [""]
            else:
                tok, lit = take()
                if tok != "ID":
                    raise SelectorError("found '%s', expected: identifier" % lit)
                values = [lit]
            if op in ("gt", "lt"):
                try:
                    int(values[0])
                except ValueError:
                    raise SelectorError("values[0]: Invalid value: %s: for 'Gt', 'Lt' operators, the value must be an integer"
                                        % go_quote(values[0])) from None
        for v in values:
            if op not in ("gt", "lt"):
                _check_value(v)
        return (key, op, sorted(set(values)))

    while True:
        tok, lit = peek()
        if tok in ("ID", "NOT"):
            try:
                r = requirement()
            except SelectorError as e:
                raise SelectorError("unable to parse requirement: %s" % e) from None
            reqs.append(r)
            tok, lit = take()
            if tok == "END":
                return reqs
            if tok == "COMMA":
                t2, l2 = peek()
                if t2 not in ("ID", "NOT"):
                    raise SelectorError("found '%s', expected: identifier after ','" % l2)
                continue
            raise SelectorError("found '%s', expected: ',' or 'end of string'" % lit)
        if tok == "END":
            return reqs
        if tok == "ERR":
            raise SelectorError(lit)
        raise SelectorError("found '%s', expected: !, identifier, or 'end of string'" % lit)


def selector_matches(reqs, labels):
    labels = labels or {}
    for key, op, values in reqs:
        has = key in labels
        v = labels.get(key)
        if op in ("=", "in"):
            if not has or v not in values:
                return False
        elif op in ("!=", "notin"):
            if has and v in values:
                return False
        elif op == "exists":
            if not has:
                return False
        elif op == "!":
            if has:
                return False
        elif op in ("gt", "lt"):
            if not has:
                return False
            try:
                lv = int(v)
            except ValueError:
                return False
            rv = int(values[0])
            if (op == "gt" and not lv > rv) or (op == "lt" and not lv < rv):
                return False
    return True


def label_selector_to_reqs(sel):
    """A metav1.LabelSelector as requirements (LabelSelectorAsSelector)."""
    reqs = []
    if not sel:
        return reqs
    for k, v in (sel.get("matchLabels") or {}).items():
        reqs.append((k, "=", [v]))
    for e in sel.get("matchExpressions") or []:
        op = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}.get(e.get("operator"))
        if op:
            reqs.append((e.get("key"), op, sorted(set(e.get("values") or []))))
    return reqs


def label_selector_string(sel):
    """LabelSelectorAsSelector(sel).String(): requirements sorted by key."""
    parts = []
    for key, op, values in sorted(label_selector_to_reqs(sel), key=lambda r: r[0]):
        if op == "=":
            parts.append("%s=%s" % (key, values[0]))
        elif op in ("in", "notin"):
            parts.append("%s %s (%s)" % (key, op, ",".join(values)))
        elif op == "exists":
            parts.append(key)
        elif op == "!":
            parts.append("!" + key)
    return ",".join(parts)


def field_value(obj, path):
    cur = obj
    for p in path.split("."):
        if not isinstance(cur, dict):
            return ""
        cur = cur.get(p)
    if cur is None:
        return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


def parse_field_selector(s, res):
    reqs = []
    if not s:
        return reqs
    terms = re.split(r"(?<!\\),", s)
    for term in terms:
        if not term:
            continue
        m = re.match(r"^(.*?)(!=|==|=)(.*)$", term)
        if not m:
            raise SelectorError("invalid selector: '%s'; can't understand '%s'" % (s, term))
        f, op, v = m.group(1), m.group(2), m.group(3)
        if f not in res.fields:
            raise SelectorError("field label not supported: %s" % f)
        reqs.append((f, "!=" if op == "!=" else "=", v.replace("\\,", ",").replace("\\=", "=").replace("\\\\", "\\")))
    return reqs


def field_selector_matches(reqs, obj):
    for f, op, v in reqs:
        actual = field_value(obj, f)
        if (op == "=") != (actual == v):
            return False
    return True


# ----------------------------------------------------------------------------------------------
# PATCH: RFC 6902 JSON patch, RFC 7386 merge patch, and the strategic merge patch driven by the
# x-kubernetes-patch-strategy / x-kubernetes-patch-merge-key annotations of the official schemas


class PatchError(Exception):
    def __init__(self, msg, code=422):
        super().__init__(msg)
        self.code = code


def _pointer(path):
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError("JSON pointer must start with '/': %s" % path, 400)
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _resolve(doc, parts, path):
    cur = doc
    for p in parts:
        if isinstance(cur, dict):
            if p not in cur:
                raise PatchError("doc is missing path: \"%s\": missing value" % path)
            cur = cur[p]
        elif isinstance(cur, list):
            try:
                i = int(p)
            except ValueError:
                raise PatchError("doc is missing path: \"%s\": missing value" % path) from None
            if i < 0 or i >= len(cur):
                raise PatchError("doc is missing path: \"%s\": missing value" % path)
            cur = cur[i]
        else:
            raise PatchError("doc is missing path: \"%s\": missing value" % path)
    return cur


def json_patch(doc, ops):
    if not isinstance(ops, list):
        raise PatchError("json: cannot unmarshal object into Go value of type jsonpatch.Patch", 400)
    doc = deep(doc)
    for op in ops:
        if not isinstance(op, dict) or "op" not in op:
            raise PatchError("Unexpected kind: %s" % json.dumps(op), 400)
        kind = op["op"]
        path = op.get("path", "")
        if not isinstance(path, str):
            raise PatchError("path must be a string", 400)
        parts = _pointer(path)

        def add(d, parts, value):
            if not parts:
                return value
            parent = _resolve(d, parts[:-1], path)
            last = parts[-1]
            if isinstance(parent, dict):
                parent[last] = value
            elif isinstance(parent, list):
                if last == "-":
                    parent.append(value)
                else:
                    try:
                        i = int(last)
                    except ValueError:
                        raise PatchError("add operation does not apply: doc is missing path: \"%s\": missing value" % path) from None
                    if i < 0 or i > len(parent):
                        raise PatchError("add operation does not apply: doc is missing path: \"%s\": missing value" % path)
                    parent.insert(i, value)
            else:
                raise PatchError("add operation does not apply: doc is missing path: \"%s\": missing value" % path)
            return d

        def remove(d, parts):
            if not parts:
                raise PatchError("unable to remove the whole document")
            parent = _resolve(d, parts[:-1], path)
            last = parts[-1]
            if isinstance(parent, dict):
                if last not in parent:
                    raise PatchError("remove operation does not apply: doc is missing path: \"%s\": missing value" % path)
                return parent.pop(last)
            if isinstance(parent, list):
                try:
                    i = int(last)
                except ValueError:
                    i = -1
                if i < 0 or i >= len(parent):
                    raise PatchError("remove operation does not apply: doc is missing path: \"%s\": missing value" % path)
                return parent.pop(i)
            raise PatchError("remove operation does not apply: doc is missing path: \"%s\": missing value" % path)

        if kind == "add":
            if "value" not in op:
                raise PatchError("add operation missing value", 400)
            doc = add(doc, parts, deep(op["value"]))
        elif kind == "remove":
            remove(doc, parts)
        elif kind == "replace":
            if "value" not in op:
                raise PatchError("replace operation missing value", 400)
            if not parts:
                doc = deep(op["value"])
            else:
                _resolve(doc, parts, path)
                remove(doc, parts)
                doc = add(doc, parts, deep(op["value"]))
        elif kind in ("move", "copy"):
            frm = op.get("from")
            if not isinstance(frm, str):
                raise PatchError("%s operation missing from" % kind, 400)
            fparts = _pointer(frm)
            value = deep(_resolve(doc, fparts, frm))
            if kind == "move":
                remove(doc, fparts)
            doc = add(doc, parts, value)
        elif kind == "test":
            if _resolve(doc, parts, path) != op.get("value"):
                raise PatchError("testing value %s failed: test failed" % path)
        else:
            raise PatchError("Unexpected kind: %s" % kind, 400)
    return doc


def merge_patch(target, patch):
    if not isinstance(patch, dict):
        return deep(patch)
    result = deep(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            result.pop(k, None)
        else:
            result[k] = merge_patch(result.get(k), v)
    return result


def _sub_schema(schema, key):
    if not isinstance(schema, dict):
        return None
    props = schema.get("properties")
    if isinstance(props, dict) and key in props:
        return props[key]
    ap = schema.get("additionalProperties")
    if isinstance(ap, dict):
        return ap
    return None


def _strip_directives(v):
    if isinstance(v, dict):
        return {k: _strip_directives(x) for k, x in v.items()
                if not (k.startswith("$setElementOrder/") or k.startswith("$deleteFromPrimitiveList/") or k in ("$patch", "$retainKeys"))
                and x is not None}
    if isinstance(v, list):
        return [_strip_directives(x) for x in v if not (isinstance(x, dict) and x.get("$patch") == "delete")]
    return v


def strategic_merge(orig, patch, schema):
    """k8s.io/apimachinery/pkg/util/strategicpatch, for the directives a client sends."""
    if not isinstance(patch, dict):
        return deep(patch)
    directive = patch.get("$patch")
    if directive == "replace":
        return _strip_directives({k: v for k, v in patch.items() if k != "$patch"})
    if directive == "delete":
        return None
    if directive is not None:
        raise PatchError("Unknown patch type: %s in map: %s" % (directive, json.dumps(patch)), 400)
    result = deep(orig) if isinstance(orig, dict) else {}
    retain = patch.get("$retainKeys")
    for k, v in patch.items():
        if k in ("$patch", "$retainKeys") or k.startswith("$setElementOrder/"):
            continue
        if k.startswith("$deleteFromPrimitiveList/"):
            field = k.split("/", 1)[1]
            if isinstance(result.get(field), list) and isinstance(v, list):
                result[field] = [x for x in result[field] if x not in v]
            continue
        sub = _sub_schema(schema, k)
        if v is None:
            result.pop(k, None)
        elif isinstance(v, dict):
            merged = strategic_merge(result.get(k), v, sub)
            if merged is None:
                result.pop(k, None)
            else:
                result[k] = merged
        elif isinstance(v, list):
            strategy = (sub or {}).get("x-kubernetes-patch-strategy", "")
            mkey = (sub or {}).get("x-kubernetes-patch-merge-key")
            cur = result.get(k) if isinstance(result.get(k), list) else []
            if any(isinstance(x, dict) and x.get("$patch") == "replace" for x in v):
                result[k] = _strip_directives([x for x in v if not (isinstance(x, dict) and x.get("$patch") == "replace")])
            elif "merge" in strategy.split(",") and mkey:
                items = deep(cur)
                item_schema = (sub or {}).get("items")
                for pitem in v:
                    if not isinstance(pitem, dict):
                        raise PatchError("merging an object in json but data type is not map, found %s" % json.dumps(pitem), 400)
                    kv = pitem.get(mkey)
                    idx = next((i for i, x in enumerate(items) if isinstance(x, dict) and x.get(mkey) == kv), None)
                    if pitem.get("$patch") == "delete":
                        if idx is not None:
                            items.pop(idx)
                        continue
                    if kv is None:
                        raise PatchError("map: %s does not contain declared merge key: %s" % (json.dumps(pitem), mkey), 400)
                    if idx is None:
                        items.append(_strip_directives(pitem))
                    else:
                        items[idx] = strategic_merge(items[idx], pitem, item_schema)
                result[k] = items
            elif "merge" in strategy.split(","):
                items = deep(cur)
                for x in v:
                    if x not in items:
                        items.append(deep(x))
                result[k] = items
            else:
                result[k] = _strip_directives(v)
        else:
            result[k] = v
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain}
    return result


def smp_removals(prev, new, schema):
    """The strategic-merge patch that removes what a previous apply set and this one omits."""
    if not isinstance(prev, dict) or not isinstance(new, dict):
        return {}
    out = {}
    for k, pv in prev.items():
        sub = _sub_schema(schema, k)
        if k not in new:
            out[k] = None
            continue
        nv = new[k]
        if isinstance(pv, dict) and isinstance(nv, dict):
            r = smp_removals(pv, nv, sub)
            if r:
                out[k] = r
        elif isinstance(pv, list) and isinstance(nv, list):
            strategy = (sub or {}).get("x-kubernetes-patch-strategy", "")
            mkey = (sub or {}).get("x-kubernetes-patch-merge-key")
            if "merge" in strategy.split(",") and mkey:
                nkeys = {x.get(mkey) for x in nv if isinstance(x, dict)}
                dels = [{mkey: x.get(mkey), "$patch": "delete"} for x in pv if isinstance(x, dict) and x.get(mkey) not in nkeys]
                for x in pv:
                    if isinstance(x, dict) and x.get(mkey) in nkeys:
                        y = next(y for y in nv if isinstance(y, dict) and y.get(mkey) == x.get(mkey))
                        r = smp_removals(x, y, (sub or {}).get("items"))
                        if r:
                            r[mkey] = x.get(mkey)
                            dels.append(r)
                if dels:
                    out[k] = dels
            elif "merge" in strategy.split(","):
                gone = [x for x in pv if x not in nv]
                if gone:
                    out["$deleteFromPrimitiveList/" + k] = gone
    return out


# ----------------------------------------------------------------------------------------------
# What the API server does to an object before storing it: Go's encoding drops nulls and empty
# omitempty slices and maps; defaulting (pkg/apis/*/v1/defaults.go); quantities canonicalised


def normalize(obj, schema):
    if isinstance(obj, dict):
        props = schema.get("properties") if isinstance(schema, dict) else None
        ap = schema.get("additionalProperties") if isinstance(schema, dict) else None
        required = set(schema.get("required", [])) if isinstance(schema, dict) else set()
        out = {}
        for k, v in obj.items():
            sub = props.get(k) if isinstance(props, dict) and k in props else (ap if isinstance(ap, dict) else None)
            if v is None:
                continue
            v = normalize(v, sub)
            if k not in required and isinstance(sub, dict):
                is_map = isinstance(sub.get("additionalProperties"), dict) and "properties" not in sub
                if isinstance(v, list) and not v:
                    continue
                if is_map and isinstance(v, dict) and not v:
                    continue
            out[k] = v
        return out
    if isinstance(obj, list):
        sub = schema.get("items") if isinstance(schema, dict) else None
        return [normalize(v, sub) for v in obj]
    return obj


def _canon_resources(res):
    if not isinstance(res, dict):
        return
    for part in ("requests", "limits"):
        m = res.get(part)
        if isinstance(m, dict):
            for k, v in list(m.items()):
                try:
                    m[k] = canonical_quantity(v)
                except ValueError:
                    pass


def default_image_pull_policy(image):
    if not isinstance(image, str):
        return "IfNotPresent"
    if "@" in image:
        return "IfNotPresent"
    last = image.rsplit("/", 1)[-1]
    if ":" not in last or last.rsplit(":", 1)[1] == "latest":
        return "Always"
    return "IfNotPresent"


def default_probe(p):
    if not isinstance(p, dict):
        return
    p.setdefault("timeoutSeconds", 1)
    p.setdefault("periodSeconds", 10)
    p.setdefault("successThreshold", 1)
    p.setdefault("failureThreshold", 3)
    if isinstance(p.get("httpGet"), dict):
        p["httpGet"].setdefault("scheme", "HTTP")


def default_pod_spec(ps):
    if not isinstance(ps, dict):
        return
    ps.setdefault("restartPolicy", "Always")
    ps.setdefault("terminationGracePeriodSeconds", 30)
    ps.setdefault("dnsPolicy", "ClusterFirst")
    ps.setdefault("securityContext", {})
    ps.setdefault("schedulerName", "default-scheduler")
    for c in (ps.get("initContainers") or []) + (ps.get("containers") or []):
        if not isinstance(c, dict):
            continue
        c.setdefault("terminationMessagePath", "/dev/termination-log")
        c.setdefault("terminationMessagePolicy", "File")
        c.setdefault("imagePullPolicy", default_image_pull_policy(c.get("image")))
        c.setdefault("resources", {})
        res = c["resources"]
        if isinstance(res, dict) and isinstance(res.get("limits"), dict):
            req = res.setdefault("requests", {})
            if isinstance(req, dict):
                for k, v in res["limits"].items():
                    req.setdefault(k, v)
        _canon_resources(res)
        for port in c.get("ports") or []:
            if isinstance(port, dict):
                port.setdefault("protocol", "TCP")
        for pn in ("livenessProbe", "readinessProbe", "startupProbe"):
            default_probe(c.get(pn))
        for e in c.get("env") or []:
            if isinstance(e, dict) and isinstance(e.get("valueFrom"), dict) and isinstance(e["valueFrom"].get("fieldRef"), dict):
                e["valueFrom"]["fieldRef"].setdefault("apiVersion", "v1")
    for v in ps.get("volumes") or []:
        if isinstance(v, dict):
            for src in ("configMap", "secret"):
                if isinstance(v.get(src), dict):
                    v[src].setdefault("defaultMode", 420)


def default_object(res, obj):
    spec = obj.get("spec")
    if res.plural == "namespaces":
        fins = obj.setdefault("spec", {}).setdefault("finalizers", [])
        if isinstance(fins, list) and "kubernetes" not in fins:
            fins.append("kubernetes")
        obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = obj["metadata"].get("name", "")
        obj.setdefault("status", {}).setdefault("phase", "Active")
    elif res.plural == "deployments" and isinstance(spec, dict):
        spec.setdefault("replicas", 1)
        st = spec.setdefault("strategy", {})
        if isinstance(st, dict):
            st.setdefault("type", "RollingUpdate")
            if st["type"] == "RollingUpdate":
                ru = st.setdefault("rollingUpdate", {})
                if isinstance(ru, dict):
                    ru.setdefault("maxUnavailable", "25%")
                    ru.setdefault("maxSurge", "25%")
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
        if isinstance(spec.get("template"), dict):
            default_pod_spec(spec["template"].get("spec"))
    elif res.plural == "statefulsets" and isinstance(spec, dict):
        spec.setdefault("replicas", 1)
        spec.setdefault("podManagementPolicy", "OrderedReady")
        us = spec.setdefault("updateStrategy", {})
        if isinstance(us, dict):
            us.setdefault("type", "RollingUpdate")
            if us["type"] == "RollingUpdate":
                ru = us.setdefault("rollingUpdate", {})
                if isinstance(ru, dict):
                    ru.setdefault("partition", 0)
        spec.setdefault("revisionHistoryLimit", 10)
        pol = spec.setdefault("persistentVolumeClaimRetentionPolicy", {})
        if isinstance(pol, dict):
            pol.setdefault("whenDeleted", "Retain")
            pol.setdefault("whenScaled", "Retain")
        for t in spec.get("volumeClaimTemplates") or []:
            if isinstance(t, dict):
                t.setdefault("apiVersion", "v1")
                t.setdefault("kind", "PersistentVolumeClaim")
                ts = t.setdefault("spec", {})
                if isinstance(ts, dict):
                    ts.setdefault("volumeMode", "Filesystem")
                    _canon_resources(ts.get("resources"))
                t.setdefault("status", {}).setdefault("phase", "Pending")
        if isinstance(spec.get("template"), dict):
            default_pod_spec(spec["template"].get("spec"))
    elif res.plural == "services" and isinstance(spec, dict):
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        for p in spec.get("ports") or []:
            if isinstance(p, dict):
                p.setdefault("protocol", "TCP")
                if "targetPort" not in p and "port" in p:
                    p["targetPort"] = p["port"]
        if spec["type"] != "ExternalName":
            spec.setdefault("internalTrafficPolicy", "Cluster")
        if spec["type"] in ("NodePort", "LoadBalancer"):
            spec.setdefault("externalTrafficPolicy", "Cluster")
        if spec["type"] == "LoadBalancer":
            spec.setdefault("allocateLoadBalancerNodePorts", True)
        if spec.get("sessionAffinity") == "ClientIP":
            spec.setdefault("sessionAffinityConfig", {"clientIP": {"timeoutSeconds": 10800}})
    return obj


# ----------------------------------------------------------------------------------------------
# Semantic validation (the parts of pkg/apis/{core,apps}/validation that EMP's objects touch)

PROTOCOLS = ["SCTP", "TCP", "UDP"]


def validate_object_meta(res, meta, errs, fld="metadata", check_name=True):
    if not isinstance(meta, dict):
        errs.required(fld + ".name", "name or generateName is required")
        return
    name = meta.get("name") or ""
    gen = meta.get("generateName") or ""
    if check_name:
        if not name and not gen:
            errs.required(fld + ".name", "name or generateName is required")
        if gen:
            for m in name_errors(res.name_rule, gen, prefix=True):
                errs.invalid(fld + ".generateName", gen, m)
        if name:
            for m in name_errors(res.name_rule, name):
                errs.invalid(fld + ".name", name, m)
    validate_labels(meta.get("labels"), fld + ".labels", errs)
    validate_annotations(meta.get("annotations"), fld + ".annotations", errs)
    validate_finalizers(meta.get("finalizers"), fld + ".finalizers", errs)


STANDARD_FINALIZERS = ("kubernetes", "orphan", "foregroundDeletion")


def validate_finalizers(finalizers, fld, errs):
    """validateKubeFinalizerName (pkg/apis/core/validation)."""
    for f in finalizers or []:
        if not isinstance(f, str):
            continue
        msgs = is_qualified_name(f)
        for m in msgs:
            errs.invalid(fld, f, m)
        if not msgs and "/" not in f and f not in STANDARD_FINALIZERS:
            errs.invalid(fld, f, "name is neither a standard finalizer name nor is it fully qualified")


def _int_or_percent(v, fld, errs):
    if isinstance(v, str):
        m = re.match(r"^([0-9]+)%$", v)
        if not m:
            errs.invalid(fld, v, "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or "
                                 "'93%', regex used for validation is '[0-9]+%')")
            return None
        n = int(m.group(1))
        if n > 100:
            errs.invalid(fld, v, "must not be greater than 100%")
        return ("pct", n)
    if is_int(v):
        if v < 0:
            errs.invalid(fld, v, "must be greater than or equal to 0")
        return ("int", v)
    return None


def validate_label_selector(sel, fld, errs):
    if not isinstance(sel, dict):
        return
    validate_labels(sel.get("matchLabels"), fld + ".matchLabels", errs)
    for i, e in enumerate(sel.get("matchExpressions") or []):
        if not isinstance(e, dict):
            continue
        p = "%s.matchExpressions[%d]" % (fld, i)
        op = e.get("operator")
        vals = e.get("values") or []
        if op in ("In", "NotIn"):
            if not vals:
                errs.required(p + ".values", "must be specified when `operator` is 'In' or 'NotIn'")
        elif op in ("Exists", "DoesNotExist"):
            if vals:
                errs.forbidden(p + ".values", "may not be specified when `operator` is 'Exists' or 'DoesNotExist'")
        else:
            errs.invalid(p + ".operator", op, "not a valid selector operator")
        for m in is_qualified_name(e.get("key") or ""):
            errs.invalid(p + ".key", e.get("key") or "", m)


def go_label_selector(sel):
    ml = (sel or {}).get("matchLabels")
    me = (sel or {}).get("matchExpressions")
    mls = "map[string]string(nil)" if not ml else go_value(ml)
    mes = "[]v1.LabelSelectorRequirement(nil)" if not me else "[]v1.LabelSelectorRequirement{...}"
    return "v1.LabelSelector{MatchLabels:%s, MatchExpressions:%s}" % (mls, mes)


def validate_probe(p, fld, errs, liveness_like):
    if not isinstance(p, dict):
        return
    handlers = [h for h in ("exec", "httpGet", "tcpSocket", "grpc") if p.get(h) is not None]
    if not handlers:
        errs.required(fld, "must specify a handler type")
    elif len(handlers) > 1:
        errs.forbidden(fld + "." + handlers[1], "may not specify more than 1 handler type")
    for k in ("initialDelaySeconds", "timeoutSeconds", "periodSeconds", "successThreshold", "failureThreshold"):
        v = p.get(k)
        if is_int(v) and v < 0:
            errs.invalid(fld + "." + k, v, "must be greater than or equal to 0")
    if liveness_like and is_int(p.get("successThreshold")) and p["successThreshold"] != 1:
        errs.invalid(fld + ".successThreshold", p["successThreshold"], "must be 1")
    for h in ("httpGet", "tcpSocket"):
        hp = p.get(h)
        if isinstance(hp, dict):
            port = hp.get("port")
            if is_int(port):
                if not 1 <= port <= 65535:
                    errs.invalid(fld + "." + h + ".port", port, PORT_RANGE_MSG)
            elif isinstance(port, str):
                for m in is_valid_port_name(port):
                    errs.invalid(fld + "." + h + ".port", port, m)
            if h == "httpGet" and hp.get("scheme") not in (None, "HTTP", "HTTPS"):
                errs.not_supported(fld + ".httpGet.scheme", hp.get("scheme"), ["HTTP", "HTTPS"])


def validate_resources(r, fld, errs):
    if not isinstance(r, dict):
        return
    parsed = {}
    for part in ("limits", "requests"):
        m = r.get(part)
        if not isinstance(m, dict):
            continue
        for k, v in m.items():
            try:
                q, _ = parse_quantity(v)
            except ValueError:
                continue  # reported as a decoding error (400) before
            if q < 0:
                errs.invalid("%s.%s[%s]" % (fld, part, k), v, "must be greater than or equal to 0")
            parsed[(part, k)] = (q, v)
    for (part, k), (q, v) in parsed.items():
        if part == "requests" and ("limits", k) in parsed:
            lq, lv = parsed[("limits", k)]
            if q > lq:
                errs.invalid("%s.requests" % fld, canonical_quantity(v), "must be less than or equal to %s limit of %s"
                             % (k, canonical_quantity(lv)))


def validate_container(c, fld, errs, volume_names, names_seen):
    if not isinstance(c, dict):
        return
    name = c.get("name") or ""
    if not name:
        errs.required(fld + ".name")
    else:
        for m in is_dns1123_label(name):
            errs.invalid(fld + ".name", name, m)
        if name in names_seen:
            errs.duplicate(fld + ".name", name)
        names_seen.add(name)
    if not c.get("image"):
        errs.required(fld + ".image")
    ipp = c.get("imagePullPolicy")
    if ipp not in (None, "Always", "IfNotPresent", "Never"):
        errs.not_supported(fld + ".imagePullPolicy", ipp, ["Always", "IfNotPresent", "Never"])
    port_names = set()
    for i, p in enumerate(c.get("ports") or []):
        if not isinstance(p, dict):
            continue
        pf = "%s.ports[%d]" % (fld, i)
        cp = p.get("containerPort")
        if not cp:
            errs.required(pf + ".containerPort")
        elif is_int(cp) and not 1 <= cp <= 65535:
            errs.invalid(pf + ".containerPort", cp, PORT_RANGE_MSG)
        hp = p.get("hostPort")
        if is_int(hp) and hp != 0 and not 1 <= hp <= 65535:
            errs.invalid(pf + ".hostPort", hp, PORT_RANGE_MSG)
        pn = p.get("name")
        if pn:
            for m in is_valid_port_name(pn):
                errs.invalid(pf + ".name", pn, m)
            if pn in port_names:
                errs.duplicate(pf + ".name", pn)
            port_names.add(pn)
        proto = p.get("protocol")
        if proto is not None and proto not in PROTOCOLS:
            errs.not_supported(pf + ".protocol", proto, PROTOCOLS)
    for i, e in enumerate(c.get("env") or []):
        if not isinstance(e, dict):
            continue
        ef = "%s.env[%d]" % (fld, i)
        en = e.get("name") or ""
        if not en:
            errs.required(ef + ".name")
        elif any(ord(ch) < 0x20 or ord(ch) > 0x7E or ch == "=" for ch in en):
            errs.invalid(ef + ".name", en, "a valid environment variable name must consist only of printable ASCII characters "
                                           "other than '='")
        vf = e.get("valueFrom")
        if isinstance(vf, dict):
            srcs = [k for k in ("fieldRef", "resourceFieldRef", "configMapKeyRef", "secretKeyRef", "fileKeyRef") if vf.get(k)]
            if e.get("value"):
                errs.invalid(ef + ".valueFrom", "", "may not be specified when `value` is not empty")
            if not srcs:
                errs.invalid(ef + ".valueFrom", "", "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or "
                                                    "`secretKeyRef`")
            elif len(srcs) > 1:
                errs.invalid(ef + ".valueFrom", "", "may not have more than one field specified at a time")
    validate_resources(c.get("resources"), fld + ".resources", errs)
    validate_probe(c.get("livenessProbe"), fld + ".livenessProbe", errs, True)
    validate_probe(c.get("readinessProbe"), fld + ".readinessProbe", errs, False)
    validate_probe(c.get("startupProbe"), fld + ".startupProbe", errs, True)
    paths = set()
    for i, vm in enumerate(c.get("volumeMounts") or []):
        if not isinstance(vm, dict):
            continue
        vf = "%s.volumeMounts[%d]" % (fld, i)
        vn = vm.get("name") or ""
        if not vn:
            errs.required(vf + ".name")
        elif vn not in volume_names:
            errs.not_found(vf + ".name", vn)
        mp = vm.get("mountPath") or ""
        if not mp:
            errs.required(vf + ".mountPath")
        elif mp in paths:
            errs.invalid(vf + ".mountPath", mp, "must be unique")
        paths.add(mp)


def validate_pod_spec(ps, fld, errs, extra_volumes=()):
    if not isinstance(ps, dict):
        errs.required(fld + ".containers")
        return
    volume_names = set(extra_volumes)
    for i, v in enumerate(ps.get("volumes") or []):
        if not isinstance(v, dict):
            continue
        vn = v.get("name") or ""
        vf = "%s.volumes[%d]" % (fld, i)
        if not vn:
            errs.required(vf + ".name")
        else:
            for m in is_dns1123_label(vn):
                errs.invalid(vf + ".name", vn, m)
            if vn in volume_names:
                errs.duplicate(vf + ".name", vn)
            volume_names.add(vn)
        if len([k for k in v if k != "name"]) == 0:
            errs.required(vf, "must specify a volume type")
    containers = ps.get("containers") or []
    if not containers:
        errs.required(fld + ".containers")
    names = set()
    for i, c in enumerate(ps.get("initContainers") or []):
        validate_container(c, "%s.initContainers[%d]" % (fld, i), errs, volume_names, names)
    for i, c in enumerate(containers):
        validate_container(c, "%s.containers[%d]" % (fld, i), errs, volume_names, names)
    rp = ps.get("restartPolicy")
    if rp is not None and rp not in ("Always", "OnFailure", "Never"):
        errs.not_supported(fld + ".restartPolicy", rp, ["Always", "OnFailure", "Never"])
    dp = ps.get("dnsPolicy")
    if dp is not None and dp not in ("ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"):
        errs.not_supported(fld + ".dnsPolicy", dp, ["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"])
    tg = ps.get("terminationGracePeriodSeconds")
    if is_int(tg) and tg < 0:
        errs.invalid(fld + ".terminationGracePeriodSeconds", tg, "must be greater than or equal to 0")


def validate_template(tpl, sel, fld, errs, kindname, extra_volumes=()):
    if not isinstance(tpl, dict):
        errs.required(fld)
        return
    meta = tpl.get("metadata") or {}
    validate_labels(meta.get("labels"), fld + ".metadata.labels", errs)
    validate_annotations(meta.get("annotations"), fld + ".metadata.annotations", errs)
    labels = meta.get("labels") or {}
    if isinstance(sel, dict) and (sel.get("matchLabels") or sel.get("matchExpressions")):
        if not selector_matches(label_selector_to_reqs(sel), labels):
            errs.invalid(fld + ".metadata.labels", labels, "`selector` does not match template `labels`")
    spec = tpl.get("spec")
    validate_pod_spec(spec, fld + ".spec", errs, extra_volumes)
    if isinstance(spec, dict):
        rp = spec.get("restartPolicy")
        if rp is not None and rp != "Always":
            errs.not_supported(fld + ".spec.restartPolicy", rp, ["Always"])
        if kindname == "statefulset" and spec.get("activeDeadlineSeconds") is not None:
            errs.forbidden(fld + ".spec.activeDeadlineSeconds", "activeDeadlineSeconds in StatefulSet is not Supported")
        if kindname == "deployment" and spec.get("activeDeadlineSeconds") is not None:
            errs.forbidden(fld + ".spec.activeDeadlineSeconds", "activeDeadlineSeconds in ReplicaSet is not Supported")


def validate_deployment(obj, errs, old=None):
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        errs.required("spec.selector")
        errs.required("spec.template")
        return
    r = spec.get("replicas")
    if is_int(r) and r < 0:
        errs.invalid("spec.replicas", r, "must be greater than or equal to 0")
    sel = spec.get("selector")
    _selector_checks(sel, "spec.selector", errs, "deployment")
    validate_template(spec.get("template"), sel, "spec.template", errs, "deployment")
    st = spec.get("strategy") or {}
    if isinstance(st, dict):
        t = st.get("type")
        if t not in (None, "RollingUpdate", "Recreate"):
            errs.not_supported("spec.strategy.type", t, ["Recreate", "RollingUpdate"])
        if t == "Recreate" and st.get("rollingUpdate") is not None:
            errs.forbidden("spec.strategy.rollingUpdate", "may not be specified when strategy `type` is 'Recreate'")
        ru = st.get("rollingUpdate")
        if t == "RollingUpdate" and isinstance(ru, dict):
            mu = _int_or_percent(ru.get("maxUnavailable", "25%"), "spec.strategy.rollingUpdate.maxUnavailable", errs)
            ms = _int_or_percent(ru.get("maxSurge", "25%"), "spec.strategy.rollingUpdate.maxSurge", errs)
            if mu and ms and mu[1] == 0 and ms[1] == 0:
                errs.invalid("spec.strategy.rollingUpdate.maxUnavailable", ru.get("maxUnavailable"),
                             "may not be 0 when `maxSurge` is 0")
    for k in ("revisionHistoryLimit", "minReadySeconds"):
        v = spec.get(k)
        if is_int(v) and v < 0:
            errs.invalid("spec." + k, v, "must be greater than or equal to 0")
    pds = spec.get("progressDeadlineSeconds")
    mrs = spec.get("minReadySeconds") or 0
    if is_int(pds):
        if pds < 0:
            errs.invalid("spec.progressDeadlineSeconds", pds, "must be greater than or equal to 0")
        elif is_int(mrs) and pds <= mrs:
            errs.invalid("spec.progressDeadlineSeconds", pds, "must be greater than minReadySeconds")
    if old is not None and isinstance(old.get("spec"), dict) and old["spec"].get("selector") != sel:
        errs.errs.append({"reason": "FieldValueInvalid", "field": "spec.selector",
                          "message": "Invalid value: %s: field is immutable" % go_label_selector(sel)})


def _selector_checks(sel, fld, errs, what):
    if sel is None:
        errs.required(fld)
        return
    validate_label_selector(sel, fld, errs)
    if isinstance(sel, dict) and not sel.get("matchLabels") and not sel.get("matchExpressions"):
        errs.errs.append({"reason": "FieldValueInvalid", "field": fld,
                          "message": "Invalid value: %s: empty selector is invalid for %s" % (go_label_selector(sel), what)})


STS_UPDATABLE = ("replicas", "ordinals", "template", "updateStrategy", "persistentVolumeClaimRetentionPolicy", "minReadySeconds")
ACCESS_MODES = ["ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod"]


def validate_statefulset(obj, errs, old=None):
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        errs.required("spec.selector")
        errs.required("spec.template")
        return
    pmp = spec.get("podManagementPolicy")
    if pmp not in (None, "OrderedReady", "Parallel"):
        errs.invalid("spec.podManagementPolicy", pmp, "must be 'OrderedReady' or 'Parallel'")
    us = spec.get("updateStrategy") or {}
    if isinstance(us, dict):
        t = us.get("type")
        if t not in (None, "RollingUpdate", "OnDelete"):
            errs.invalid("spec.updateStrategy", t, "must be 'RollingUpdate' or 'OnDelete'")
        ru = us.get("rollingUpdate")
        if t == "OnDelete" and ru is not None:
            errs.invalid("spec.updateStrategy.rollingUpdate", "", "only allowed for updateStrategy 'RollingUpdate'")
        if isinstance(ru, dict) and is_int(ru.get("partition")) and ru["partition"] < 0:
            errs.invalid("spec.updateStrategy.rollingUpdate.partition", ru["partition"], "must be greater than or equal to 0")
    for k in ("replicas", "minReadySeconds", "revisionHistoryLimit"):
        v = spec.get(k)
        if is_int(v) and v < 0:
            errs.invalid("spec." + k, v, "must be greater than or equal to 0")
    pol = spec.get("persistentVolumeClaimRetentionPolicy")
    if isinstance(pol, dict):
        for k in ("whenDeleted", "whenScaled"):
            if pol.get(k) not in (None, "Retain", "Delete"):
                errs.not_supported("spec.persistentVolumeClaimRetentionPolicy." + k, pol.get(k), ["Retain", "Delete"])
    sel = spec.get("selector")
    _selector_checks(sel, "spec.selector", errs, "statefulset")
    claim_names = []
    for i, t in enumerate(spec.get("volumeClaimTemplates") or []):
        if not isinstance(t, dict):
            continue
        f = "spec.volumeClaimTemplates[%d]" % i
        tn = (t.get("metadata") or {}).get("name") or ""
        if not tn:
            errs.required(f + ".metadata.name", "name or generateName is required")
        else:
            for m in is_dns1123_subdomain(tn):
                errs.invalid(f + ".metadata.name", tn, m)
        claim_names.append(tn)
        validate_labels((t.get("metadata") or {}).get("labels"), f + ".metadata.labels", errs)
        ts = t.get("spec") or {}
        modes = ts.get("accessModes") or []
        if not modes:
            errs.required(f + ".spec.accessModes", "at least 1 access mode is required")
        for m in modes:
            if m not in ACCESS_MODES:
                errs.not_supported(f + ".spec.accessModes", m, ACCESS_MODES)
        storage = ((ts.get("resources") or {}).get("requests") or {}).get("storage")
        if storage is None:
            errs.required(f + ".spec.resources[storage]")
        else:
            try:
                q, _ = parse_quantity(storage)
                if q <= 0:
                    errs.invalid(f + ".spec.resources[storage]", storage, "must be greater than zero")
            except ValueError:
                pass
        vm = ts.get("volumeMode")
        if vm not in (None, "Filesystem", "Block"):
            errs.not_supported(f + ".spec.volumeMode", vm, ["Block", "Filesystem"])
    validate_template(spec.get("template"), sel, "spec.template", errs, "statefulset", claim_names)
    if old is not None and isinstance(old.get("spec"), dict):
        a = {k: v for k, v in spec.items() if k not in STS_UPDATABLE and k != "revisionHistoryLimit"}
        b = {k: v for k, v in old["spec"].items() if k not in STS_UPDATABLE and k != "revisionHistoryLimit"}
        if a != b:
            errs.forbidden("spec", "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', "
                                   "'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden")


SERVICE_TYPES = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"]


def validate_service(obj, errs, node_port_range, old=None):
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        errs.required("spec.ports")
        return
    t = spec.get("type", "ClusterIP")
    if t not in SERVICE_TYPES:
        errs.not_supported("spec.type", t, SERVICE_TYPES)
    cip = spec.get("clusterIP")
    headless = cip == "None"
    if cip not in (None, "", "None"):
        try:
            ipaddress.ip_address(cip)
        except ValueError:
            errs.invalid("spec.clusterIPs[0]", cip, "must be empty, 'None', or a valid IP address")
    if headless and t in ("NodePort", "LoadBalancer"):
        errs.invalid("spec.clusterIPs[0]", "None", "may not be set to 'None' for %s services" % t)
    ports = spec.get("ports") or []
    if not ports and t != "ExternalName" and not headless:
        errs.required("spec.ports")
    names = set()
    seen = set()
    lo, hi = node_port_range
    for i, p in enumerate(ports):
        if not isinstance(p, dict):
            continue
        f = "spec.ports[%d]" % i
        pn = p.get("name") or ""
        if len(ports) > 1 and not pn:
            errs.required(f + ".name")
        if pn:
            for m in is_dns1123_label(pn):
                errs.invalid(f + ".name", pn, m)
            if pn in names:
                errs.duplicate(f + ".name", pn)
            names.add(pn)
        port = p.get("port")
        if is_int(port) and not 1 <= port <= 65535:
            errs.invalid(f + ".port", port, PORT_RANGE_MSG)
        proto = p.get("protocol", "TCP")
        if proto not in PROTOCOLS:
            errs.not_supported(f + ".protocol", proto, PROTOCOLS)
        key = (port, proto)
        if key in seen:
            errs.errs.append({"reason": "FieldValueDuplicate", "field": f, "message":
                              "Duplicate value: core.ServicePort{Name:%s, Protocol:%s, Port:%s}" % (go_quote(pn), go_quote(proto), port)})
        seen.add(key)
        tp = p.get("targetPort")
        if is_int(tp):
            if not 1 <= tp <= 65535:
                errs.invalid(f + ".targetPort", tp, PORT_RANGE_MSG)
        elif isinstance(tp, str):
            for m in is_valid_port_name(tp):
                errs.invalid(f + ".targetPort", tp, m)
        np = p.get("nodePort")
        if np:
            if t == "ClusterIP":
                errs.forbidden(f + ".nodePort", "may not be used when `type` is 'ClusterIP'")
            elif is_int(np) and not lo <= np <= hi:
                errs.invalid(f + ".nodePort", np, "provided port is not in the valid range. The range of valid ports is %d-%d"
                             % (lo, hi))
    validate_labels(spec.get("selector"), "spec.selector", errs)
    sa = spec.get("sessionAffinity")
    if sa not in (None, "None", "ClientIP"):
        errs.not_supported("spec.sessionAffinity", sa, ["ClientIP", "None"])
    etp = spec.get("externalTrafficPolicy")
    if etp is not None:
        if t not in ("NodePort", "LoadBalancer"):
            errs.invalid("spec.externalTrafficPolicy", etp, "may only be set for externally-accessible services")
        elif etp not in ("Cluster", "Local"):
            errs.not_supported("spec.externalTrafficPolicy", etp, ["Cluster", "Local"])
    if t == "ExternalName" and not spec.get("externalName"):
        errs.required("spec.externalName")
    if old is not None:
        ocip = (old.get("spec") or {}).get("clusterIP")
        if ocip and cip and cip != ocip and t != "ExternalName":
            errs.errs.append({"reason": "FieldValueInvalid", "field": "spec.clusterIPs[0]",
                              "message": "Invalid value: []string{%s}: may not change once set" % go_quote(cip)})


# ----------------------------------------------------------------------------------------------
# The store: objects by resource, one global resourceVersion counter (like etcd's revision), a
# bounded history of changes that watches are served from, and snapshots for paginated lists


class Event:
    __slots__ = ("rv", "plural", "type", "obj", "old")

    def __init__(self, rv, plural, etype, obj, old):
        self.rv = rv
        self.plural = plural
        self.type = etype
        self.obj = obj
        self.old = old


class Store:
    def __init__(self, fake, history_size):
        self.fake = fake
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self.rv = 1000
        self.objs = {p: {} for p in RESOURCES}
        self.hist = []
        self.hist_rvs = []
        self.history_size = history_size
        self.compacted = self.rv  # a watch can resume from any resourceVersion >= this
        self.epoch = 0  # bumped when the fault expire_watches ends every open watch
        self.stopping = False
        self.snapshots = {}
        self.hooks = []

    def get(self, plural, ns, name):
        return self.objs[plural].get((ns or "", name))

    def items(self, plural, ns=None):
        d = self.objs[plural]
        if ns is None:
            return list(d.values())
        return [o for (n, _), o in d.items() if n == ns]

    def _record(self, plural, etype, obj, old):
        ev = Event(self.rv, plural, etype, obj, old)
        self.hist.append(ev)
        self.hist_rvs.append(ev.rv)
        if len(self.hist) > self.history_size + self.history_size // 16:  # trimmed in batches
            drop = len(self.hist) - self.history_size
            self.compacted = self.hist_rvs[drop - 1]
            del self.hist[:drop]
            del self.hist_rvs[:drop]
        self.cond.notify_all()
        for h in self.hooks:
            h(ev)

    def put(self, plural, obj, old=None):
        """Stores obj (a new dict, never mutated afterwards) with the next resourceVersion."""
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        self.fake.check_response_object(RESOURCES[plural].kind, obj)
        key = (obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
        prev = self.objs[plural].get(key)
        self.objs[plural][key] = obj
        self._record(plural, "MODIFIED" if prev is not None else "ADDED", obj, prev)
        return obj

    def remove(self, plural, ns, name):
        key = (ns or "", name)
        prev = self.objs[plural].pop(key, None)
        if prev is None:
            return None
        self.rv += 1
        gone = deep(prev)
        gone["metadata"]["resourceVersion"] = str(self.rv)
        self._record(plural, "DELETED", gone, prev)
        return gone

    def events_after(self, rv):
        i = bisect.bisect_right(self.hist_rvs, rv)
        return self.hist[i:]

    def expire(self):
        """What etcd compaction does to watches and continue tokens."""
        self.compacted = self.rv
        self.hist.clear()
        self.hist_rvs.clear()
        self.snapshots.clear()
        self.epoch += 1
        self.cond.notify_all()

    def snapshot(self, plural, rv, make=True):
        now = time.time()
        ttl = self.fake.config["continue_ttl_s"]
        for k in [k for k, (t, _) in self.snapshots.items() if now - t > ttl]:
            del self.snapshots[k]
        snap = self.snapshots.get((plural, rv))
        if snap is None and make:
            items = sorted(self.objs[plural].items())
            snap = (now, items)
            self.snapshots[(plural, rv)] = snap
            while len(self.snapshots) > 256:
                del self.snapshots[min(self.snapshots, key=lambda k: self.snapshots[k][0])]
        return snap[1] if snap else None


# ----------------------------------------------------------------------------------------------
# The controller: what the scheduler, kubelet, deployment, statefulset, PV, service and namespace
# controllers of a cluster do, for the objects the fake serves


POD_FAULTS = ("image_pull", "crash_loop", "oom", "unschedulable")
NODES = ["fake-node-0", "fake-node-1", "fake-node-2"]


class PodInfo:
    def __init__(self, owner, revision, ordinal, now, ready_delay):
        self.owner = owner  # (plural, ns, name)
        self.revision = revision
        self.ordinal = ordinal
        self.created = now
        self.ready_delay = ready_delay
        self.ready_at = None  # when the containers will be up, once scheduled and pulled
        self.scheduled_at = None
        self.node = None
        self.ip = None
        self.started_at = None  # containers running since
        self.ready_since = None
        self.restarts = 0
        self.last_term = None
        self.next_crash = None
        self.crashing = False
        self.cond_times = {}


class Controller:
    def __init__(self, fake):
        self.fake = fake
        self.store = fake.store
        self.dirty = set()
        self.timers = []
        self.wake = threading.Event()
        self.pods = {}  # (ns, pod) -> PodInfo
        self.owner_pods = {}  # owner key -> set of pod names
        self.wl = {}  # workload key -> dict of controller-side state
        self.lb_ips = {}
        self.lb_due = {}
        self.since = {}  # when something began that completes after a delay (precise; timestamps have seconds)
        self.ip_counter = 0
        self.store.hooks.append(self.on_event)
        self.thread = threading.Thread(target=self.run, name="controller", daemon=True)

    # -- plumbing
    def mark(self, key):
        self.dirty.add(key)
        self.wake.set()

    def at(self, when, key):
        heapq.heappush(self.timers, (when, key))
        self.wake.set()

    def on_event(self, ev):
        o = ev.obj
        md = o["metadata"]
        key = (ev.plural, md.get("namespace", ""), md["name"])
        if ev.plural in WORKLOADS or ev.plural in ("services", "namespaces", "persistentvolumeclaims"):
            self.mark(key)
        elif ev.plural == "pods":
            info = self.pods.get((key[1], key[2]))
            if ev.type == "DELETED":
                self.pods.pop((key[1], key[2]), None)
                if info:
                    self.owner_pods.get(info.owner, set()).discard(key[2])
                    self.mark(info.owner)
                for v in o["spec"].get("volumes") or []:
                    claim = (v.get("persistentVolumeClaim") or {}).get("claimName")
                    if claim:
                        self.mark(("persistentvolumeclaims", key[1], claim))

    def run(self):
        delay = 0.0
        while not self.store.stopping:
            if delay > 0:
                self.wake.wait(timeout=min(delay, 1.0))
            self.wake.clear()
            with self.store.lock:
                now = time.time()
                while self.timers and self.timers[0][0] <= now:
                    self.dirty.add(heapq.heappop(self.timers)[1])
                work, self.dirty = self.dirty, set()
            for key in sorted(work):  # one object at a time, so that API requests do not wait for a whole pass
                with self.store.lock:
                    if self.store.stopping:
                        return
                    try:
                        self.reconcile(key)
                    except Exception as e:  # a bug in the fake: say so loudly, keep serving
                        import traceback
                        traceback.print_exc()
                        self.fake.violation("fake_error", "", "controller %s" % (key,), "the fake's controller failed: %r" % e)
            with self.store.lock:
                delay = (self.timers[0][0] - time.time()) if self.timers else 1.0
                if self.dirty:
                    delay = 0.0

    def reconcile(self, key):
        plural = key[0]
        if plural in WORKLOADS:
            self.reconcile_workload(key)
        elif plural == "services":
            self.reconcile_service(key)
        elif plural == "namespaces":
            self.reconcile_namespace(key)
        elif plural == "persistentvolumeclaims":
            self.reconcile_pvc(key)

    def fault_for(self, ns, owner_name, pod_name):
        for f in self.fake.faults:
            if f["type"] not in POD_FAULTS:
                continue
            if f.get("namespace") and f["namespace"] != ns:
                continue
            if f.get("name") and f["name"] not in (owner_name, pod_name):
                continue
            return f
        return None

    # -- workloads
    def reconcile_workload(self, key):
        plural, ns, name = key
        st = self.store
        obj = st.get(plural, ns, name)
        names = self.owner_pods.setdefault(key, set())
        pods = [st.get("pods", ns, n) for n in sorted(names)]
        pods = [p for p in pods if p is not None]
        if obj is None or obj["metadata"].get("deletionTimestamp"):
            for p in pods:
                self.delete_pod(p)
            if obj is None:
                self.owner_pods.pop(key, None)
                wl = self.wl.pop(key, None)
                if plural == "statefulsets" and wl and wl.get("claims_delete_on_delete"):
                    for c in st.items("persistentvolumeclaims", ns):
                        if any(r.get("uid") == wl["uid"] for r in c["metadata"].get("ownerReferences") or []):
                            self.fake.delete_claim(c)
            elif not names:
                st.remove(plural, ns, name)  # foreground deletion done
            return
        wl = self.wl.setdefault(key, {"uid": obj["metadata"]["uid"], "last_progress": time.time(), "gen": None})
        spec = obj["spec"]
        pol = spec.get("persistentVolumeClaimRetentionPolicy") or {}
        wl["claims_delete_on_delete"] = pol.get("whenDeleted") == "Delete"
        if wl["gen"] != obj["metadata"].get("generation"):
            wl["gen"] = obj["metadata"].get("generation")
            wl["last_progress"] = time.time()
        desired = spec.get("replicas", 1)
        now = time.time()
        if plural == "deployments":
            self.scale_deployment(obj, pods, desired, now)
        else:
            self.scale_statefulset(obj, pods, desired, now)
        pods = [st.get("pods", ns, n) for n in sorted(names)]
        pods = [p for p in pods if p is not None]
        next_t = None
        for p in pods:
            t = self.update_pod(p, now)
            if t is not None and (next_t is None or t < next_t):
                next_t = t
        pods = [st.get("pods", ns, n) for n in sorted(names)]
        pods = [p for p in pods if p is not None]
        if plural == "deployments":
            t = self.deployment_status(obj, pods, desired, now, wl)
        else:
            t = self.statefulset_status(obj, pods, desired, now)
        if t is not None and (next_t is None or t < next_t):
            next_t = t
        if next_t is not None:
            self.at(next_t, key)

    def is_ready(self, pod):
        for c in (pod.get("status") or {}).get("conditions") or []:
            if c["type"] == "Ready":
                return c["status"] == "True"
        return False

    def scale_deployment(self, obj, pods, desired, now):
        name = obj["metadata"]["name"]
        h = template_hash(obj["spec"]["template"])
        cur = [p for p in pods if p["metadata"]["labels"].get("pod-template-hash") == h]
        old = [p for p in pods if p["metadata"]["labels"].get("pod-template-hash") != h]
        recreate = (obj["spec"].get("strategy") or {}).get("type") == "Recreate"

        def victims(lst):  # unready first, then the newest (controller.ActivePods ordering, roughly)
            return sorted(lst, key=lambda p: (self.is_ready(p), -self.pods[(p["metadata"]["namespace"], p["metadata"]["name"])].created))

        if recreate and old:
            for p in old:
                self.delete_pod(p)
            return
        if len(cur) < desired:
            for _ in range(desired - len(cur)):
                self.create_pod(obj, "%s-%s-" % (name, h), h, None, now)
        elif len(cur) > desired:
            for p in victims(cur)[: len(cur) - desired]:
                self.delete_pod(p)
        ready_cur = len([p for p in cur if self.is_ready(p)])
        keep_old = max(0, desired - ready_cur)
        if len(old) > keep_old:
            for p in victims(old)[: len(old) - keep_old]:
                self.delete_pod(p)

    def sts_revision(self, obj):
        return "%s-%s" % (obj["metadata"]["name"], template_hash(obj["spec"]["template"]))

    def scale_statefulset(self, obj, pods, desired, now):
        name = obj["metadata"]["name"]
        ns = obj["metadata"]["namespace"]
        rev = self.sts_revision(obj)
        spec = obj["spec"]
        ordered = spec.get("podManagementPolicy", "OrderedReady") == "OrderedReady"
        by_ord = {}
        for p in pods:
            by_ord[self.pods[(ns, p["metadata"]["name"])].ordinal] = p
        start = ((spec.get("ordinals") or {}).get("start")) or 0
        wanted = set(range(start, start + desired))
        # scale down: the highest ordinals go first
        extra = sorted([o for o in by_ord if o not in wanted], reverse=True)
        for o in extra[: (1 if ordered else len(extra))]:
            self.delete_pod(by_ord.pop(o))
            if (spec.get("persistentVolumeClaimRetentionPolicy") or {}).get("whenScaled") == "Delete":
                for t in spec.get("volumeClaimTemplates") or []:
                    c = self.store.get("persistentvolumeclaims", ns, "%s-%s-%d" % (t["metadata"]["name"], name, o))
                    if c:
                        self.fake.delete_claim(c)
        if extra and ordered:
            return
        for o in sorted(wanted):
            if o in by_ord:
                if ordered and not self.is_ready(by_ord[o]):
                    break
                continue
            self.ensure_claims(obj, o, now)
            by_ord[o] = self.create_pod(obj, None, rev, o, now)
            if ordered:
                break
        # rolling update: replace the highest outdated ordinal once every pod is ready
        us = spec.get("updateStrategy") or {}
        if us.get("type", "RollingUpdate") == "RollingUpdate" and all(o in by_ord for o in wanted) and \
                all(self.is_ready(by_ord[o]) for o in wanted):
            part = (us.get("rollingUpdate") or {}).get("partition", 0) or 0
            outdated = [o for o in sorted(wanted, reverse=True) if o >= part and
                        by_ord[o]["metadata"]["labels"].get("controller-revision-hash") != rev]
            if outdated:
                self.delete_pod(by_ord[outdated[0]])

    def ensure_claims(self, sts, ordinal, now):
        ns = sts["metadata"]["namespace"]
        name = sts["metadata"]["name"]
        spec = sts["spec"]
        pol = spec.get("persistentVolumeClaimRetentionPolicy") or {}
        for t in spec.get("volumeClaimTemplates") or []:
            cname = "%s-%s-%d" % (t["metadata"]["name"], name, ordinal)
            if self.store.get("persistentvolumeclaims", ns, cname):
                continue
            labels = dict((t.get("metadata") or {}).get("labels") or {})
            labels.update((spec.get("selector") or {}).get("matchLabels") or {})
            md = {"name": cname, "namespace": ns, "uid": str(uuid.uuid4()), "creationTimestamp": now_rfc3339(now),
                  "finalizers": ["kubernetes.io/pvc-protection"]}
            if labels:
                md["labels"] = labels
            ann = (t.get("metadata") or {}).get("annotations")
            if ann:
                md["annotations"] = dict(ann)
            if pol.get("whenDeleted") == "Delete":
                md["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": name,
                                          "uid": sts["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}]
            cspec = deep(t.get("spec") or {})
            cspec.setdefault("storageClassName", "standard")
            cspec.setdefault("volumeMode", "Filesystem")
            claim = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": md, "spec": cspec,
                     "status": {"phase": "Pending"}}
            self.store.put("persistentvolumeclaims", claim)
            self.at(now + self.fake.config["pv_bind_delay_s"], ("persistentvolumeclaims", ns, cname))

    def next_ip(self, base):
        self.ip_counter += 1
        n = self.ip_counter
        return "%s.%d.%d" % (base, (n // 250) % 250, n % 250 + 2)

    def create_pod(self, wl, generate, revision, ordinal, now):
        md = wl["metadata"]
        ns = md["namespace"]
        tpl = wl["spec"]["template"]
        tmd = tpl.get("metadata") or {}
        labels = dict(tmd.get("labels") or {})
        if ordinal is None:
            rs = generate[:-1]
            while True:
                pname = generate + rand_suffix()
                if not self.store.get("pods", ns, pname):
                    break
            labels["pod-template-hash"] = revision
            owner = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs,
                     "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, md["uid"] + "/" + revision)), "controller": True,
                     "blockOwnerDeletion": True}
            pmd = {"name": pname, "generateName": generate, "namespace": ns}
        else:
            pname = "%s-%d" % (md["name"], ordinal)
            labels["controller-revision-hash"] = revision
            labels["statefulset.kubernetes.io/pod-name"] = pname
            labels["apps.kubernetes.io/pod-index"] = str(ordinal)
            owner = {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": md["name"], "uid": md["uid"], "controller": True,
                     "blockOwnerDeletion": True}
            pmd = {"name": pname, "generateName": md["name"] + "-", "namespace": ns}
        pmd.update({"uid": str(uuid.uuid4()), "creationTimestamp": now_rfc3339(now), "generation": 1})
        if labels:
            pmd["labels"] = labels
        if tmd.get("annotations"):
            pmd["annotations"] = dict(tmd["annotations"])
        pmd["ownerReferences"] = [owner]
        spec = deep(tpl.get("spec") or {})
        spec.setdefault("serviceAccountName", "default")
        spec.setdefault("serviceAccount", spec["serviceAccountName"])
        spec.setdefault("enableServiceLinks", True)
        spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
        spec.setdefault("priority", 0)
        spec.setdefault("tolerations", [
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}])
        if ordinal is not None:
            spec["hostname"] = pname
            if wl["spec"].get("serviceName"):
                spec["subdomain"] = wl["spec"]["serviceName"]
            vols = spec.setdefault("volumes", [])
            for t in wl["spec"].get("volumeClaimTemplates") or []:
                tn = t["metadata"]["name"]
                vols[:] = [v for v in vols if v.get("name") != tn]
                vols.insert(0, {"name": tn, "persistentVolumeClaim": {"claimName": "%s-%s-%d" % (tn, md["name"], ordinal)}})
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": pmd, "spec": spec,
               "status": {"phase": "Pending", "qosClass": qos_class(spec)}}
        okey = ("deployments" if ordinal is None else "statefulsets", ns, md["name"])
        info = PodInfo(okey, revision, ordinal, now, self.fake.config["ready_delay_s"])
        self.pods[(ns, pname)] = info
        self.owner_pods.setdefault(okey, set()).add(pname)
        self.store.put("pods", pod)
        return pod

    def delete_pod(self, pod):
        md = pod["metadata"]
        self.store.remove("pods", md["namespace"], md["name"])

    def update_pod(self, pod, now):
        """Moves a pod along: scheduled, pulled, running, ready; or stuck the way a fault says."""
        md = pod["metadata"]
        ns = md["namespace"]
        info = self.pods.get((ns, md["name"]))
        if info is None:
            return None
        fault = self.fault_for(ns, info.owner[2], md["name"])
        ftype = fault["type"] if fault else None
        next_t = None
        if info.scheduled_at is None and ftype != "unschedulable":
            info.scheduled_at = now
            info.node = NODES[hash(md["name"]) % len(NODES)]
        if info.scheduled_at is not None and info.ready_at is None and ftype != "image_pull":
            info.ready_at = now + info.ready_delay
        if info.started_at is None and info.ready_at is not None:
            if now >= info.ready_at:
                info.started_at = now
                info.ip = self.next_ip("10.244")
            else:
                next_t = info.ready_at
        if info.started_at is not None:
            if ftype in ("crash_loop", "oom"):
                interval = float(fault.get("interval_s", self.fake.config["crash_interval_s"]))
                if not info.crashing:
                    info.crashing = True
                    info.next_crash = now
                if now >= info.next_crash:
                    info.restarts += 1
                    oom = ftype == "oom"
                    info.last_term = {"exitCode": 137 if oom else 1, "reason": "OOMKilled" if oom else "Error",
                                      "startedAt": now_rfc3339(info.started_at), "finishedAt": now_rfc3339(now),
                                      "containerID": "containerd://" + hashlib.sha256(("%s/%d" % (md["uid"], info.restarts))
                                                                                       .encode()).hexdigest()}
                    info.started_at = now
                    info.next_crash = now + interval
                next_t = info.next_crash
            elif info.crashing:  # the fault was lifted: the container starts and stays up
                info.crashing = False
                info.started_at = now
                info.ready_at = now + info.ready_delay
            if not info.crashing and info.ready_at is not None and now < info.ready_at:
                next_t = info.ready_at if next_t is None else min(next_t, info.ready_at)
        status = self.pod_status(pod, info, fault, now)
        spec = pod["spec"]
        if info.node and spec.get("nodeName") != info.node:
            spec = dict(spec, nodeName=info.node)
        if status != pod.get("status") or spec is not pod["spec"]:
            new = dict(pod, metadata=deep(md), spec=spec, status=status)
            self.store.put("pods", new, pod)
        return next_t

    def _cond(self, info, ctype, status, now, reason=None, message=None):
        prev = info.cond_times.get(ctype)
        if prev is None or prev[0] != status:
            info.cond_times[ctype] = (status, now)
            t = now
        else:
            t = prev[1]
        c = {"type": ctype, "status": status, "lastTransitionTime": now_rfc3339(t)}
        if reason:
            c["reason"] = reason
        if message:
            c["message"] = message
        c["observedGeneration"] = 1
        return c

    def pod_status(self, pod, info, fault, now):
        md = pod["metadata"]
        spec = pod["spec"]
        containers = spec.get("containers") or []
        ftype = fault["type"] if fault else None
        st = {"observedGeneration": 1}
        if info.scheduled_at is None:
            msg = (fault or {}).get("message") or "0/3 nodes are available: 3 Insufficient cpu."
            st.update({"phase": "Pending", "conditions": [self._cond(info, "PodScheduled", "False", now, "Unschedulable", msg)],
                       "qosClass": qos_class(spec)})
            return st
        host_ip = "10.128.0.%d" % (NODES.index(info.node) + 2)
        running = info.started_at is not None
        ready = running and not info.crashing and info.ready_at is not None and now >= info.ready_at
        if ready and info.ready_since is None:
            info.ready_since = now
        elif not ready:
            info.ready_since = None
        names = [c["name"] for c in containers]
        unready = "containers with unready status: [%s]" % " ".join(names)
        conds = [
            self._cond(info, "PodReadyToStartContainers", "True" if running or info.crashing else "False", now),
            self._cond(info, "Initialized", "True", now),
            self._cond(info, "Ready", "True" if ready else "False", now, None if ready else "ContainersNotReady",
                       None if ready else unready),
            self._cond(info, "ContainersReady", "True" if ready else "False", now, None if ready else "ContainersNotReady",
                       None if ready else unready),
            self._cond(info, "PodScheduled", "True", now),
        ]
        st.update({"phase": "Running" if running else "Pending", "conditions": conds, "hostIP": host_ip,
                   "hostIPs": [{"ip": host_ip}], "startTime": now_rfc3339(info.scheduled_at)})
        if running:
            st["podIP"] = info.ip
            st["podIPs"] = [{"ip": info.ip}]
        statuses = []
        for c in containers:
            image = c.get("image", "")
            cs = {"name": c["name"], "image": image, "imageID": "", "ready": ready, "restartCount": info.restarts,
                  "started": running and not info.crashing}
            ref = image_ref(image)
            if ftype == "image_pull" and not running:
                msg = fault.get("message") or (
                    'Back-off pulling image "%s": ErrImagePull: failed to pull and unpack image "%s": failed to resolve reference '
                    '"%s": pull access denied, repository does not exist or may require authorization: server message: '
                    'insufficient_scope: authorization failed' % (image, ref, ref))
                cs["state"] = {"waiting": {"reason": "ImagePullBackOff", "message": msg}}
            elif not running:
                cs["state"] = {"waiting": {"reason": "ContainerCreating"}}
            else:
                cs["imageID"] = ref.rsplit(":", 1)[0] + "@sha256:" + hashlib.sha256(image.encode()).hexdigest()
                cs["containerID"] = "containerd://" + hashlib.sha256(("%s/%s/%d" % (md["uid"], c["name"], info.restarts))
                                                                     .encode()).hexdigest()
                if info.crashing:
                    backoff = min(10 * 2 ** max(info.restarts - 1, 0), 300)
                    cs["state"] = {"waiting": {"reason": "CrashLoopBackOff", "message":
                                               "back-off %s restarting failed container=%s pod=%s_%s(%s)"
                                               % (go_duration(backoff), c["name"], md["name"], md["namespace"], md["uid"])}}
                else:
                    cs["state"] = {"running": {"startedAt": now_rfc3339(info.started_at)}}
            if info.last_term:
                cs["lastState"] = {"terminated": dict(info.last_term)}
            else:
                cs["lastState"] = {}
            statuses.append(cs)
        st["containerStatuses"] = statuses
        st["qosClass"] = qos_class(spec)
        return st

    def deployment_status(self, obj, pods, desired, now, wl):
        md = obj["metadata"]
        spec = obj["spec"]
        h = template_hash(spec["template"])
        rs = "%s-%s" % (md["name"], h)
        cur = [p for p in pods if p["metadata"]["labels"].get("pod-template-hash") == h]
        ready = [p for p in pods if self.is_ready(p)]
        mrs = spec.get("minReadySeconds") or 0
        available = [p for p in ready if now - self.ready_since(p, now) >= mrs]
        status = {"observedGeneration": md.get("generation", 1)}
        for k, v in (("replicas", len(pods)), ("updatedReplicas", len(cur)), ("readyReplicas", len(ready)),
                     ("availableReplicas", len(available)), ("unavailableReplicas", max(0, desired - len(available)))):
            if v:
                status[k] = v
        ru = (spec.get("strategy") or {}).get("rollingUpdate") or {}
        mu = ru.get("maxUnavailable", "25%") if (spec.get("strategy") or {}).get("type") != "Recreate" else 0
        if isinstance(mu, str) and mu.endswith("%"):
            mu = (desired * int(mu[:-1])) // 100
        min_avail = desired - (mu or 0)
        old = obj.get("status") or {}
        oldc = {c["type"]: c for c in old.get("conditions") or []}

        def cond(ctype, st, reason, message, progress):
            prev = oldc.get(ctype)
            c = {"type": ctype, "status": st}
            same = prev is not None and prev.get("status") == st
            c["lastUpdateTime"] = prev["lastUpdateTime"] if prev and same and prev.get("reason") == reason and not progress \
                else now_rfc3339(now)
            c["lastTransitionTime"] = prev["lastTransitionTime"] if same else now_rfc3339(now)
            c["reason"] = reason
            c["message"] = message
            return c

        avail_ok = len(available) >= min_avail
        complete = len(cur) == desired and len(pods) == desired and len(available) >= desired
        sig = (len(cur), len(ready), len(available), len(pods))
        progressed = wl.get("sig") != sig
        if progressed:
            wl["sig"] = sig
            wl["last_progress"] = now
        deadline = spec.get("progressDeadlineSeconds", 600)
        next_t = None
        if complete:
            prog = cond("Progressing", "True", "NewReplicaSetAvailable", 'ReplicaSet "%s" has successfully progressed.' % rs,
                        progressed)
        elif now - wl["last_progress"] > deadline:
            prog = cond("Progressing", "False", "ProgressDeadlineExceeded", 'ReplicaSet "%s" has timed out progressing.' % rs, False)
        else:
            created = "Progressing" not in oldc
            prog = cond("Progressing", "True", "NewReplicaSetCreated" if created else "ReplicaSetUpdated",
                        ('Created new replica set "%s"' if created else 'ReplicaSet "%s" is progressing.') % rs, progressed)
            next_t = wl["last_progress"] + deadline + 0.01
        availc = cond("Available", "True" if avail_ok else "False",
                      "MinimumReplicasAvailable" if avail_ok else "MinimumReplicasUnavailable",
                      "Deployment has minimum availability." if avail_ok else "Deployment does not have minimum availability.", False)
        order = [c["type"] for c in old.get("conditions") or []]
        conds = {"Available": availc, "Progressing": prog}
        status["conditions"] = [conds[t] for t in order if t in conds] + [conds[t] for t in ("Progressing", "Available")
                                                                          if t not in order]
        if mrs and len(ready) > len(available):
            t = min(self.ready_since(p, now) + mrs for p in ready if now - self.ready_since(p, now) < mrs)
            next_t = t if next_t is None else min(next_t, t)
        self.write_status("deployments", obj, status)
        return next_t

    def ready_since(self, pod, now):
        info = self.pods.get((pod["metadata"]["namespace"], pod["metadata"]["name"]))
        if info is not None and info.ready_since is not None:
            return info.ready_since
        for c in pod["status"].get("conditions") or []:
            if c["type"] == "Ready" and c["status"] == "True":
                return parse_rfc3339(c["lastTransitionTime"]) or now
        return now

    def statefulset_status(self, obj, pods, desired, now):
        md = obj["metadata"]
        spec = obj["spec"]
        rev = self.sts_revision(obj)
        old = obj.get("status") or {}
        ready = [p for p in pods if self.is_ready(p)]
        mrs = spec.get("minReadySeconds") or 0
        available = [p for p in ready if now - self.ready_since(p, now) >= mrs]
        updated = [p for p in pods if p["metadata"]["labels"].get("controller-revision-hash") == rev]
        cur_rev = old.get("currentRevision") or rev
        if len(updated) == desired and len(pods) == desired:
            cur_rev = rev
        current = [p for p in pods if p["metadata"]["labels"].get("controller-revision-hash") == cur_rev]
        status = {"observedGeneration": md.get("generation", 1), "replicas": len(pods)}
        if ready:
            status["readyReplicas"] = len(ready)
        if current:
            status["currentReplicas"] = len(current)
        if updated:
            status["updatedReplicas"] = len(updated)
        status["currentRevision"] = cur_rev
        status["updateRevision"] = rev
        status["collisionCount"] = 0
        status["availableReplicas"] = len(available)
        self.write_status("statefulsets", obj, status)
        if mrs and len(ready) > len(available):
            return min(self.ready_since(p, now) + mrs for p in ready if now - self.ready_since(p, now) < mrs)
        return None

    def write_status(self, plural, obj, status):
        if obj.get("status") == status:
            return
        new = dict(obj, metadata=deep(obj["metadata"]), status=status)
        self.store.put(plural, new, obj)

    # -- services, claims, namespaces
    def reconcile_service(self, key):
        _, ns, name = key
        svc = self.store.get("services", ns, name)
        if svc is None:
            self.lb_ips.pop(key, None)
            self.lb_due.pop(key, None)
            return
        status = deep(svc.get("status") or {})
        old_lb = status.get("loadBalancer") or {}
        lb = {}
        now = time.time()
        if svc["spec"].get("type") == "LoadBalancer":
            due = self.lb_due.setdefault(key, now + self.fake.config["lb_delay_s"])
            pending = any(f["type"] == "lb_pending" and (not f.get("namespace") or f["namespace"] == ns) and
                          (not f.get("name") or f["name"] == name) for f in self.fake.faults)
            if old_lb.get("ingress"):
                lb = old_lb
            elif not pending:
                if now >= due:
                    if key not in self.lb_ips:
                        self.ip_counter += 1
                        self.lb_ips[key] = "203.0.113.%d" % (self.ip_counter % 250 + 2)
                    lb = {"ingress": [{"ip": self.lb_ips[key], "ipMode": "VIP"}]}
                else:
                    self.at(due, key)
        else:
            self.lb_due.pop(key, None)
        status["loadBalancer"] = lb
        if status != svc.get("status"):
            self.write_status("services", svc, status)

    def reconcile_pvc(self, key):
        _, ns, name = key
        c = self.store.get("persistentvolumeclaims", ns, name)
        if c is None:
            return
        if c["metadata"].get("deletionTimestamp"):
            in_use = any((v.get("persistentVolumeClaim") or {}).get("claimName") == name
                         for p in self.store.items("pods", ns) for v in p["spec"].get("volumes") or [])
            if not in_use:
                self.store.remove("persistentvolumeclaims", ns, name)
            return
        if (c.get("status") or {}).get("phase") != "Bound":
            due = self.since.setdefault(("bind",) + key, time.time() + self.fake.config["pv_bind_delay_s"])
            if time.time() < due:
                self.at(due, key)
                return
            self.since.pop(("bind",) + key, None)
            new = deep(c)
            new["spec"]["volumeName"] = "pvc-" + c["metadata"]["uid"]
            ann = new["metadata"].setdefault("annotations", {})
            ann["pv.kubernetes.io/bind-completed"] = "yes"
            ann["pv.kubernetes.io/bound-by-controller"] = "yes"
            ann["volume.kubernetes.io/storage-provisioner"] = "fake.csi.emp.io"
            req = ((new["spec"].get("resources") or {}).get("requests") or {})
            new["status"] = {"phase": "Bound", "accessModes": list(new["spec"].get("accessModes") or ["ReadWriteOnce"])}
            if "storage" in req:
                new["status"]["capacity"] = {"storage": req["storage"]}
            self.store.put("persistentvolumeclaims", new, c)

    def reconcile_namespace(self, key):
        _, _, name = key
        nsobj = self.store.get("namespaces", "", name)
        if nsobj is None or not nsobj["metadata"].get("deletionTimestamp"):
            return
        for plural in ("deployments", "statefulsets", "services", "pods", "persistentvolumeclaims"):
            for o in self.store.items(plural, name):
                self.store.remove(plural, name, o["metadata"]["name"])
        due = self.since.setdefault(("nsdel", name), time.time() + self.fake.config["namespace_delete_delay_s"])
        if time.time() >= due:
            self.since.pop(("nsdel", name), None)
            self.store.remove("namespaces", "", name)
        else:
            self.at(due, key)


def image_ref(image):
    ref = image
    first = ref.split("/", 1)[0]
    if "/" not in ref or ("." not in first and ":" not in first and first != "localhost"):
        ref = "docker.io/" + ("library/" + ref if "/" not in ref else ref)
    if ":" not in ref.rsplit("/", 1)[-1] and "@" not in ref:
        ref += ":latest"
    return ref


def go_duration(seconds):
    seconds = int(seconds)
    if seconds < 60:
        return "%ds" % seconds
    m, s = divmod(seconds, 60)
    return "%dm%ds" % (m, s)


def qos_class(spec):
    reqs = lims = False
    guaranteed = True
    for c in spec.get("containers") or []:
        r = c.get("resources") or {}
        rq, lm = r.get("requests") or {}, r.get("limits") or {}
        if rq or lm:
            reqs = True
        if lm:
            lims = True
        for k in ("cpu", "memory"):
            if k not in lm or (k in rq and rq[k] != lm[k]):
                guaranteed = False
    if not reqs:
        return "BestEffort"
    if guaranteed and lims:
        return "Guaranteed"
    return "Burstable"


# ----------------------------------------------------------------------------------------------
# The API: what the registry of each resource does for each verb

DEFAULT_CONFIG = {
    "ready_delay_s": 0.2,  # from a pod's creation (or a fault's lifting) to Running and Ready
    "lb_delay_s": 0.3,  # from a LoadBalancer Service's creation to its ingress IP
    "crash_interval_s": 1.0,  # between two restarts of a crash-looping container
    "pv_bind_delay_s": 0.05,  # from a claim's creation to Bound
    "namespace_delete_delay_s": 0.1,  # from a namespace's DELETE to its removal
    "bookmark_interval_s": 5.0,  # between two BOOKMARK events of a watch that allows them
    "continue_ttl_s": 300.0,  # how long a continue token stays valid
    "watch_timeout_s": 1800.0,  # a watch's length when the client gives no timeoutSeconds
}
PATCH_TYPES = ["application/json-patch+json", "application/merge-patch+json", "application/strategic-merge-patch+json",
               "application/apply-patch+yaml"]
FAULT_TYPES = POD_FAULTS + ("http_500", "http_429", "slow", "drop", "expire_watches", "lb_pending")
PROTECTED_NAMESPACES = ("default", "kube-system", "kube-public")
SERVICE_CIDR = ipaddress.ip_network("10.96.0.0/12")


class Fake:
    def __init__(self, token_file, node_port_range=(30000, 32767), history_size=10000, requests_log=2000):
        self.schemas = Schemas()
        self.config = dict(DEFAULT_CONFIG)
        self.store = Store(self, history_size)
        self.lock = self.store.lock
        self.controller = Controller(self)
        self.faults = []
        self.fault_seq = 0
        self.violations = []
        self.requests = []
        self.requests_log = requests_log
        self.stats_lock = threading.Lock()
        self.reset_stats()
        self.token_file = token_file
        self._token = (None, None)
        self.node_port_range = node_port_range
        self.cluster_ips = set()
        self.node_ports = set()
        self.ip_seq = 10
        self.applied = {}
        self.quiet = False
        now = time.time()
        with self.lock:
            for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
                self.store.put("namespaces", default_object(RESOURCES["namespaces"], {
                    "apiVersion": "v1", "kind": "Namespace",
                    "metadata": {"name": ns, "uid": str(uuid.uuid4()), "creationTimestamp": now_rfc3339(now)}}))
            self.cluster_ips.add("10.96.0.1")
            self.store.put("services", {
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "kubernetes", "namespace": "default", "uid": str(uuid.uuid4()),
                             "creationTimestamp": now_rfc3339(now), "labels": {"component": "apiserver", "provider": "kubernetes"}},
                "spec": {"ports": [{"name": "https", "protocol": "TCP", "port": 443, "targetPort": 6443}],
                         "clusterIP": "10.96.0.1", "clusterIPs": ["10.96.0.1"], "type": "ClusterIP", "sessionAffinity": "None",
                         "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack", "internalTrafficPolicy": "Cluster"},
                "status": {"loadBalancer": {}}})

    # -- bookkeeping
    def log(self, msg):
        if not self.quiet:
            sys.stderr.write("%s kube_fake: %s\n" % (now_rfc3339(), msg))
            sys.stderr.flush()

    def reset_stats(self):
        with self.stats_lock:
            self.stats = {"total": 0, "by_verb": {}, "by_resource": {}, "requests": {}, "status": {}, "watches_open": 0,
                          "watches_started": 0, "unauthorized": 0, "since": now_rfc3339()}

    def count(self, verb, resource):
        with self.stats_lock:
            st = self.stats
            st["total"] += 1
            st["by_verb"][verb] = st["by_verb"].get(verb, 0) + 1
            st["by_resource"][resource] = st["by_resource"].get(resource, 0) + 1
            k = verb + " " + resource
            st["requests"][k] = st["requests"].get(k, 0) + 1
            if verb == "watch":
                st["watches_started"] += 1

    def count_status(self, code):
        with self.stats_lock:
            self.stats["status"][str(code)] = self.stats["status"].get(str(code), 0) + 1

    def watches(self, delta):
        with self.stats_lock:
            self.stats["watches_open"] += delta

    def violation(self, kind, method, path, message, errors=None, body=None):
        v = {"time": now_rfc3339(), "kind": kind, "method": method, "path": path, "message": message}
        if errors:
            v["errors"] = errors
        if body is not None:
            v["body"] = body if len(json.dumps(body)) < 20000 else "(%d bytes)" % len(json.dumps(body))
        with self.stats_lock:
            self.violations.append(v)
        self.log("VIOLATION %s %s %s: %s" % (kind, method, path, message))

    def check_response_object(self, kind, obj):
        errs = self.schemas.errors(kind, obj)
        if errs:
            self.violation("response", "", "%s %s/%s" % (kind, obj["metadata"].get("namespace", ""), obj["metadata"].get("name")),
                           "the fake made a %s that its schema refuses" % kind,
                           ["%s: %s" % (json_path(e.absolute_path), e.message) for e in errs[:20]], obj)

    def check_out(self, kind, obj, always=False):
        """Answers that are not stored objects (which were checked when stored) are checked as they go out."""
        if kind in ("Scale", "Status") or always:
            errs = self.schemas.errors(kind, obj) if kind in self.schemas.schemas else []
            if errs:
                self.violation("response", "", kind, "the fake answered a %s that its schema refuses" % kind,
                               ["%s: %s" % (json_path(e.absolute_path), e.message) for e in errs[:20]], obj)

    def check_list(self, res, lst):
        errs = self.schemas.errors(res.kind + "List", lst)
        if errs:
            self.violation("response", "", res.kind + "List", "the fake answered a list that its schema refuses",
                           ["%s: %s" % (json_path(e.absolute_path), e.message) for e in errs[:20]])

    def token(self):
        try:
            st = os.stat(self.token_file)
        except OSError:
            return None
        key = (st.st_mtime_ns, st.st_size)
        if self._token[0] != key:
            with open(self.token_file) as f:
                self._token = (key, f.read().strip())
        return self._token[1]

    # -- decoding and checking bodies
    def decode(self, body, content_type, res_kind):
        ct = (content_type or "application/json").split(";")[0].strip().lower()
        try:
            if ct in ("application/json", "*/*", ""):
                obj = json.loads(body.decode("utf-8"))
            elif ct in ("application/yaml", "application/apply-patch+yaml"):
                obj = yaml.safe_load(body.decode("utf-8"))
            else:
                raise ApiError(status_obj(415, "UnsupportedMediaType", "the body of the request was in an unknown format - accepted "
                                          "media types include: application/json, application/yaml, "
                                          "application/vnd.kubernetes.protobuf, application/cbor"), violation="bad_request")
        except (ValueError, yaml.YAMLError) as e:
            raise err_bad_request("the object provided is unrecognized (must be of type %s): couldn't get version/kind; json parse "
                                  "error: %s" % (res_kind, e)) from None
        return obj

    def check_schema(self, kind, obj, what=None):
        """What decoding with fieldValidation=Strict, and then validation, make of schema violations."""
        errs = self.schemas.errors(kind, obj)
        if not isinstance(obj, dict):
            raise err_bad_request("the object provided is unrecognized (must be of type %s): couldn't get version/kind; json parse "
                                  "error: json: cannot unmarshal %s into Go value of type struct" % (kind, type(obj).__name__),
                                  violation="schema")
        if not errs:
            return
        unknown, typeerr, required = [], [], []
        for e in errs:
            path = list(e.absolute_path)
            if e.validator == "additionalProperties":
                extra = sorted(set(e.instance) - set((e.schema.get("properties") or {}).keys()))
                for x in extra:
                    unknown.append('unknown field "%s"' % json_path(path + [x]))
            elif e.validator == "required":
                m = re.match(r"'(.*)' is a required property", e.message)
                required.append(json_path(path + [m.group(1) if m else "?"]))
            elif e.validator == "enum" and path and path[-1] in ("kind", "apiVersion") and len(path) == 1:
                want = e.schema["enum"][0]
                if path[-1] == "apiVersion":
                    typeerr.append("the API version in the data (%s) does not match the expected API version (%s)" % (e.instance, want))
                else:
                    typeerr.append("the kind in the data (%s) does not match the expected kind (%s)" % (e.instance, want))
            else:
                typeerr.append('%s in version "v1" cannot be handled as a %s: json: cannot unmarshal %s into Go struct field %s '
                               'of type %s' % (kind, kind, go_json_type(e.instance), json_path(path) or kind,
                                               schema_type_name(e.schema)))
        detail = ["%s: %s" % (json_path(e.absolute_path) or "(root)", e.message) for e in errs[:20]]
        if typeerr:
            err = ApiError(status_obj(400, "BadRequest", typeerr[0]), violation="schema")
        elif unknown:
            err = ApiError(status_obj(400, "BadRequest", "strict decoding error: " + ", ".join(unknown)), violation="schema")
        else:
            fe = FieldErrors()
            for r in required:
                fe.required(r)
            name = ((obj.get("metadata") or {}).get("name")) or ""
            res = BY_KIND.get(kind)
            err = err_invalid(kind, res.group if res else ("autoscaling" if kind == "Scale" else ""), name, fe)
            err.violation = "schema"
        err.errors = ["schema %s: %s" % (kind, d) for d in detail]
        raise err from None

    def decode_quantities(self, kind, obj):
        """Quantities that do not parse are decoding errors (400), as in Go's Quantity.UnmarshalJSON."""
        bad = []

        def walk(x, path):
            if isinstance(x, dict):
                for k, v in x.items():
                    if k in ("requests", "limits", "capacity", "allocatable", "hard") and isinstance(v, dict) and \
                            path and path[-1] in ("resources", "status", "spec", "overhead"):
                        for q in v.values():
                            try:
                                parse_quantity(q)
                            except ValueError:
                                bad.append(q)
                    else:
                        walk(v, path + [k])
            elif isinstance(x, list):
                for v in x:
                    walk(v, path)

        walk(obj, [])
        if bad:
            raise ApiError(status_obj(400, "BadRequest", '%s in version "v1" cannot be handled as a %s: %s' % (kind, kind, QUANTITY_ERR)),
                           violation="schema")

    def semantic(self, res, obj, old=None):
        errs = FieldErrors()
        validate_object_meta(res, obj.get("metadata"), errs, check_name=old is None)
        if old is not None:
            ou = old["metadata"].get("uid")
            nu = obj["metadata"].get("uid")
            if nu and nu != ou:
                errs.invalid("metadata.uid", nu, "field is immutable")
        if res.plural == "deployments":
            validate_deployment(obj, errs, old)
        elif res.plural == "statefulsets":
            validate_statefulset(obj, errs, old)
        elif res.plural == "services":
            validate_service(obj, errs, self.node_port_range, old)
        elif res.plural == "namespaces":
            validate_finalizers((obj.get("spec") or {}).get("finalizers"), "spec.finalizers", errs)
        if errs:
            name = obj["metadata"].get("name") or obj["metadata"].get("generateName") or ""
            raise err_invalid(res.kind, res.group, name, errs)

    def prepare(self, res, obj, ns):
        """Decoding's defaulting, and the server's normalisation of what it stores."""
        schema = self.schemas.schemas[res.kind]
        obj = normalize(obj, schema)
        obj["apiVersion"] = res.api_version
        obj["kind"] = res.kind
        meta = obj.setdefault("metadata", {})
        if res.namespaced:
            if meta.get("namespace") and meta["namespace"] != ns:
                raise err_bad_request("the namespace of the provided object does not match the namespace sent on the request")
            meta["namespace"] = ns
        else:
            meta.pop("namespace", None)
        meta.pop("selfLink", None)
        meta.pop("managedFields", None)
        default_object(res, obj)
        return obj

    def ns_admission(self, res, ns, name, verb="create"):
        if not res.namespaced:
            return
        nso = self.store.get("namespaces", "", ns)
        if nso is None:
            raise err_not_found(RESOURCES["namespaces"], ns)
        if verb == "create" and nso["metadata"].get("deletionTimestamp"):
            raise ApiError(status_obj(403, "Forbidden", '%s "%s" is forbidden: unable to create new content in namespace %s because it '
                                      'is being terminated' % (qualified_resource(res), name, ns),
                                      dict(details(name, res), causes=[{"reason": "NamespaceTerminating", "message":
                                                                        "namespace %s is being terminated" % ns,
                                                                        "field": "metadata.namespace"}])))

    # -- services: cluster IPs and node ports
    def allocate_service(self, obj, old=None):
        spec = obj["spec"]
        t = spec.get("type", "ClusterIP")
        ospec = (old or {}).get("spec") or {}
        if t == "ExternalName":
            for k in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"):
                spec.pop(k, None)
            return
        cip = spec.get("clusterIP") or ospec.get("clusterIP")
        if cip == "None":
            spec["clusterIP"] = "None"
            spec["clusterIPs"] = ["None"]
        else:
            if not cip:
                while True:
                    self.ip_seq += 1
                    cand = str(SERVICE_CIDR[self.ip_seq])
                    if cand not in self.cluster_ips:
                        break
                cip = cand
            elif cip != ospec.get("clusterIP"):
                ip = ipaddress.ip_address(cip)
                if ip not in SERVICE_CIDR:
                    fe = FieldErrors()
                    fe.invalid("spec.clusterIPs", [cip], "failed to allocate IP %s: the provided IP (%s) is not in the valid range. The "
                                                         "range of valid IPs is %s" % (cip, cip, SERVICE_CIDR))
                    raise err_invalid("Service", "", obj["metadata"]["name"], fe)
                if cip in self.cluster_ips:
                    fe = FieldErrors()
                    fe.invalid("spec.clusterIPs", [cip], "failed to allocate IP %s: provided IP is already allocated" % cip)
                    raise err_invalid("Service", "", obj["metadata"]["name"], fe)
            spec["clusterIP"] = cip
            spec["clusterIPs"] = [cip]
        spec.setdefault("ipFamilies", ["IPv4"])
        spec.setdefault("ipFamilyPolicy", "SingleStack")
        needs_np = t in ("NodePort", "LoadBalancer") and not (t == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts") is False)
        oldports = {(p.get("port"), p.get("protocol", "TCP")): p.get("nodePort") for p in ospec.get("ports") or []}
        mine = {p.get("nodePort") for p in ospec.get("ports") or [] if p.get("nodePort")}
        for i, p in enumerate(spec.get("ports") or []):
            np = p.get("nodePort")
            if not needs_np:
                if t == "ClusterIP":
                    p.pop("nodePort", None)
                continue
            if not np:
                np = oldports.get((p.get("port"), p.get("protocol", "TCP")))
            if np and np in self.node_ports and np not in mine:
                fe = FieldErrors()
                fe.invalid("spec.ports[%d].nodePort" % i, np, "provided port is already allocated")
                raise err_invalid("Service", "", obj["metadata"]["name"], fe)
            if not np:
                lo, hi = self.node_port_range
                for _ in range(100000):
                    cand = random.randint(lo, hi)
                    if cand not in self.node_ports:
                        np = cand
                        break
            p["nodePort"] = np
        return

    def commit_service_allocations(self, obj, old=None):
        spec = obj["spec"]
        if old is not None:
            self.release_service(old)
        if spec.get("clusterIP") and spec["clusterIP"] != "None":
            self.cluster_ips.add(spec["clusterIP"])
        for p in spec.get("ports") or []:
            if p.get("nodePort"):
                self.node_ports.add(p["nodePort"])

    def release_service(self, obj):
        spec = obj.get("spec") or {}
        self.cluster_ips.discard(spec.get("clusterIP"))
        for p in spec.get("ports") or []:
            self.node_ports.discard(p.get("nodePort"))

    # -- verbs
    def create(self, res, ns, obj, query, dry_run=False, raw=None):
        self.check_schema(res.kind, obj)
        self.decode_quantities(res.kind, obj)
        obj = self.prepare(res, obj, ns)
        meta = obj["metadata"]
        with self.lock:
            self.ns_admission(res, ns, meta.get("name") or meta.get("generateName") or "")
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = meta["generateName"] + rand_suffix()
            self.semantic(res, obj)
            if meta.get("resourceVersion"):
                raise err_internal("resourceVersion should not be set on objects to be created", violation="bad_request")
            name = meta["name"]
            if self.store.get(res.plural, ns, name) is not None:
                raise err_already_exists(res, name)
            now = time.time()
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = now_rfc3339(now)
            for k in ("deletionTimestamp", "deletionGracePeriodSeconds"):
                meta.pop(k, None)
            if res.plural in WORKLOADS:
                meta["generation"] = 1
                obj["status"] = {} if res.plural == "deployments" else {"replicas": 0, "availableReplicas": 0}
            else:
                meta.pop("generation", None)
            if res.plural == "services":
                obj["status"] = {"loadBalancer": {}}
                self.allocate_service(obj)
            if res.plural == "namespaces":
                obj["status"] = {"phase": "Active"}
            if dry_run:
                return obj
            if res.plural == "services":
                self.commit_service_allocations(obj)
            return self.store.put(res.plural, obj)

    def update(self, res, ns, name, obj, query, dry_run=False):
        self.check_schema(res.kind, obj)
        self.decode_quantities(res.kind, obj)
        if not isinstance(obj.get("metadata"), dict):
            obj["metadata"] = {}
        body_name = obj["metadata"].get("name")
        if body_name != name:
            raise err_bad_request("the name of the object (%s) does not match the name on the URL (%s)" % (body_name or "", name))
        obj = self.prepare(res, obj, ns)
        with self.lock:
            cur = self.store.get(res.plural, ns, name)
            if cur is None:
                raise err_not_found(res, name)
            rv = obj["metadata"].get("resourceVersion")
            if rv and rv != cur["metadata"]["resourceVersion"]:
                raise err_conflict(res, name)
            return self._store_update(res, ns, name, obj, cur, dry_run)

    def _store_update(self, res, ns, name, obj, cur, dry_run):
        meta = obj["metadata"]
        cm = cur["metadata"]
        if "status" in cur:  # status changes only through the status subresource (the controller here)
            obj["status"] = deep(cur["status"])
        else:
            obj.pop("status", None)
        if res.plural == "services":
            self.allocate_service(obj, cur)
        if res.plural == "namespaces":
            obj["spec"] = deep(cur.get("spec") or {})
        self.semantic(res, obj, cur)
        meta["uid"] = cm["uid"]
        meta["creationTimestamp"] = cm["creationTimestamp"]
        for k in ("deletionTimestamp", "deletionGracePeriodSeconds"):
            if k in cm:
                meta[k] = cm[k]
            else:
                meta.pop(k, None)
        if res.plural in WORKLOADS:
            meta["generation"] = cm.get("generation", 1)
            changed = obj.get("spec") != cur.get("spec")
            if res.plural == "deployments" and meta.get("annotations") != cm.get("annotations"):
                changed = True
            if changed:
                meta["generation"] += 1
        else:
            meta.pop("generation", None)
        meta["resourceVersion"] = cm["resourceVersion"]
        if obj == cur:
            return cur  # a no-op update writes nothing and keeps the resourceVersion
        if dry_run:
            return obj
        if res.plural == "services":
            self.commit_service_allocations(obj, cur)
        return self.store.put(res.plural, obj, cur)

    def scale_of(self, res, obj):
        md = obj["metadata"]
        spec = {}
        if obj["spec"].get("replicas"):
            spec["replicas"] = obj["spec"]["replicas"]
        status = {"replicas": (obj.get("status") or {}).get("replicas", 0)}
        sel = label_selector_string(obj["spec"].get("selector"))
        if sel:
            status["selector"] = sel
        return {"kind": "Scale", "apiVersion": "autoscaling/v1",
                "metadata": {"name": md["name"], "namespace": md["namespace"], "uid": md["uid"],
                             "resourceVersion": md["resourceVersion"], "creationTimestamp": md["creationTimestamp"]},
                "spec": spec, "status": status}

    def update_scale(self, res, ns, name, scale, dry_run=False):
        self.check_schema("Scale", scale)
        meta = scale.get("metadata") or {}
        if meta.get("name") and meta["name"] != name:
            raise err_bad_request("the name of the object (%s) does not match the name on the URL (%s)" % (meta["name"], name))
        if meta.get("namespace") and meta["namespace"] != ns:
            raise err_bad_request("the namespace of the provided object does not match the namespace sent on the request")
        with self.lock:
            cur = self.store.get(res.plural, ns, name)
            if cur is None:
                raise err_not_found(res, name)
            rv = meta.get("resourceVersion")
            if rv and rv != cur["metadata"]["resourceVersion"]:
                raise err_conflict(res, name)
            replicas = (scale.get("spec") or {}).get("replicas") or 0
            if replicas < 0:
                fe = FieldErrors()
                fe.invalid("spec.replicas", replicas, "must be greater than or equal to 0")
                raise err_invalid("Scale", "autoscaling", name, fe)
            new = deep(cur)
            new["spec"]["replicas"] = replicas
            out = self._store_update(res, ns, name, new, cur, dry_run)
            return self.scale_of(res, out)

    def patch(self, res, ns, name, sub, body, content_type, query):
        ct = (content_type or "").split(";")[0].strip().lower()
        if ct not in PATCH_TYPES:
            raise ApiError(status_obj(415, "UnsupportedMediaType", "the body of the request was in an unknown format - accepted media "
                                      "types include: " + ", ".join(PATCH_TYPES)), violation="bad_request")
        apply = ct == "application/apply-patch+yaml"
        if query.get("force") is not None and not apply:
            fe = FieldErrors()
            fe.forbidden("force", "may not be specified for non-apply patch")
            raise err_invalid("PatchOptions", "meta.k8s.io", "", fe)
        manager = query.get("fieldManager")
        if apply and not manager:
            fe = FieldErrors()
            fe.required("fieldManager", "is required for apply patch")
            raise err_invalid("PatchOptions", "meta.k8s.io", "", fe)
        try:
            doc = yaml.safe_load(body.decode("utf-8")) if apply else json.loads(body.decode("utf-8"))
        except (ValueError, yaml.YAMLError) as e:
            raise err_bad_request("error decoding patch: %s" % e) from None
        if ct != "application/json-patch+json" and not isinstance(doc, dict):
            raise err_bad_request("error decoding patch: json: cannot unmarshal %s into Go value of type map[string]interface {}"
                                  % go_json_type(doc))
        dry_run = query.get("dryRun") == "All"
        kind = "Scale" if sub == "scale" else res.kind
        schema = self.schemas.schemas[kind]
        with self.lock:
            cur = self.store.get(res.plural, ns, name)
            if cur is None:
                if apply and sub is None:
                    if doc.get("apiVersion") != res.api_version or doc.get("kind") != res.kind:
                        raise err_bad_request("apply patch: the object must carry apiVersion %s and kind %s" % (res.api_version, res.kind))
                    md = doc.setdefault("metadata", {}) if isinstance(doc.get("metadata"), (dict, type(None))) else doc["metadata"]
                    if doc.get("metadata") is None:
                        doc["metadata"] = md
                    if md.get("name") != name:
                        raise err_bad_request("the name of the object (%s) does not match the name on the URL (%s)"
                                              % (md.get("name") or "", name))
                    out = self.create(res, ns, deep(doc), query, dry_run)
                    if not dry_run:
                        self.applied[(res.plural, ns, name, manager, None)] = deep(doc)
                    return out, 201
                raise err_not_found(res, name)
            base = self.scale_of(res, cur) if sub == "scale" else deep(cur)
            try:
                if ct == "application/json-patch+json":
                    result = json_patch(base, doc)
                elif ct == "application/merge-patch+json":
                    result = merge_patch(base, doc)
                elif ct == "application/strategic-merge-patch+json":
                    result = strategic_merge(base, doc, schema)
                else:
                    if doc.get("apiVersion") != (("autoscaling/v1") if sub == "scale" else res.api_version) or \
                            doc.get("kind") != kind:
                        raise err_bad_request("apply patch: the object must carry apiVersion and kind of a %s" % kind)
                    prev = self.applied.get((res.plural, ns, name, manager, sub))
                    removal = smp_removals(prev, doc, schema) if prev else {}
                    result = strategic_merge(strategic_merge(base, removal, schema), doc, schema)
            except PatchError as e:
                if e.code == 400:
                    raise err_bad_request(str(e)) from None
                raise ApiError(status_obj(422, "Invalid", str(e)), violation="invalid") from None
            if not isinstance(result, dict):
                raise err_bad_request("the patched object is not an object")
            if sub == "scale":
                out = self.update_scale(res, ns, name, result, dry_run), 200
            else:
                rmeta = result.get("metadata") if isinstance(result.get("metadata"), dict) else {}
                if rmeta.get("name") != name:
                    raise err_bad_request("the name of the object (%s) does not match the name on the URL (%s)"
                                          % (rmeta.get("name") or "", name))
                self.check_schema(res.kind, result)
                self.decode_quantities(res.kind, result)
                result = self.prepare(res, result, ns)
                rv = result["metadata"].get("resourceVersion")
                if rv and rv != cur["metadata"]["resourceVersion"]:
                    raise err_conflict(res, name)
                out = self._store_update(res, ns, name, result, cur, dry_run), 200
            if apply and not dry_run:
                self.applied[(res.plural, ns, name, manager, sub)] = deep(doc)
            return out

    def delete(self, res, ns, name, query, body):
        opts = {}
        if body and body.strip():
            try:
                opts = json.loads(body.decode("utf-8"))
            except ValueError as e:
                raise err_bad_request("couldn't get version/kind; json parse error: %s" % e) from None
            if not isinstance(opts, dict) or opts.get("kind", "DeleteOptions") != "DeleteOptions":
                raise err_bad_request("the body of a DELETE must be a DeleteOptions")
            self.check_schema("DeleteOptions", opts)
        policy = query.get("propagationPolicy") or opts.get("propagationPolicy")
        if query.get("orphanDependents") == "true" or opts.get("orphanDependents") is True:
            policy = policy or "Orphan"
        if policy not in (None, "Orphan", "Foreground", "Background"):
            fe = FieldErrors()
            fe.not_supported("propagationPolicy", policy, ["Foreground", "Background", "Orphan", "nil"])
            raise err_invalid("DeleteOptions", "meta.k8s.io", "", fe)
        grace = query.get("gracePeriodSeconds") or opts.get("gracePeriodSeconds")
        dry_run = query.get("dryRun") == "All" or opts.get("dryRun") == ["All"]
        pre = opts.get("preconditions") or {}
        with self.lock:
            cur = self.store.get(res.plural, ns, name)
            if cur is None:
                raise err_not_found(res, name)
            md = cur["metadata"]
            if pre.get("uid") and pre["uid"] != md["uid"]:
                raise err_conflict(res, name, "Precondition failed: UID in precondition: %s, UID in object meta: %s" % (pre["uid"], md["uid"]))
            if pre.get("resourceVersion") and pre["resourceVersion"] != md["resourceVersion"]:
                raise err_conflict(res, name, "Precondition failed: ResourceVersion in precondition: %s, ResourceVersion in object meta: %s"
                                   % (pre["resourceVersion"], md["resourceVersion"]))
            now = now_rfc3339()
            if res.plural == "namespaces":
                if name in PROTECTED_NAMESPACES:
                    raise ApiError(status_obj(403, "Forbidden", 'namespaces "%s" is forbidden: this namespace may not be deleted' % name,
                                              details(name, res)))
                if md.get("deletionTimestamp"):
                    raise err_conflict(res, name, "The system is ensuring all content is removed from this namespace.  Upon completion, "
                                                  "this namespace will automatically be purged by the system.")
                new = deep(cur)
                new["metadata"]["deletionTimestamp"] = now
                new["status"]["phase"] = "Terminating"
                if dry_run:
                    return new
                return self.store.put("namespaces", new, cur)
            if res.plural in WORKLOADS:
                if md.get("deletionTimestamp"):
                    return cur
                if policy in ("Foreground", "Orphan"):
                    new = deep(cur)
                    new["metadata"]["deletionTimestamp"] = now
                    new["metadata"]["deletionGracePeriodSeconds"] = 0
                    fin = "foregroundDeletion" if policy == "Foreground" else "orphan"
                    new["metadata"]["finalizers"] = (md.get("finalizers") or []) + [fin]
                    if dry_run:
                        return new
                    if policy == "Orphan":
                        key = (res.plural, ns, name)
                        for pn in self.controller.owner_pods.pop(key, set()):
                            self.controller.pods.pop((ns, pn), None)
                    return self.store.put(res.plural, new, cur)
                if dry_run:
                    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details(name, res, uid=md["uid"])}
                self.store.remove(res.plural, ns, name)
                return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                        "details": details(name, res, uid=md["uid"])}
            if res.plural == "persistentvolumeclaims":
                if md.get("deletionTimestamp"):
                    return cur
                new = deep(cur)
                new["metadata"]["deletionTimestamp"] = now
                new["metadata"]["deletionGracePeriodSeconds"] = 0
                if dry_run:
                    return new
                return self.store.put(res.plural, new, cur)
            if res.plural == "pods":
                gone = deep(cur)
                gone["metadata"]["deletionTimestamp"] = now
                gone["metadata"]["deletionGracePeriodSeconds"] = int(grace) if grace not in (None, "") else \
                    cur["spec"].get("terminationGracePeriodSeconds", 30)
                if dry_run:
                    return gone
                out = self.store.remove("pods", ns, name)
                gone["metadata"]["resourceVersion"] = out["metadata"]["resourceVersion"]
                return gone
            # services
            if dry_run:
                return cur
            out = self.store.remove(res.plural, ns, name)
            self.release_service(cur)
            self.applied = {k: v for k, v in self.applied.items() if k[:3] != (res.plural, ns, name)}
            return out

    def delete_claim(self, claim):
        md = claim["metadata"]
        if md.get("deletionTimestamp"):
            return
        new = deep(claim)
        new["metadata"]["deletionTimestamp"] = now_rfc3339()
        new["metadata"]["deletionGracePeriodSeconds"] = 0
        self.store.put("persistentvolumeclaims", new, claim)

    def list(self, res, ns, query):
        lsel, fsel = self.selectors(res, query)
        limit = query.get("limit")
        try:
            limit = int(limit) if limit not in (None, "") else 0
        except ValueError:
            raise err_bad_request("invalid value for limit: %s" % limit) from None
        if limit < 0:
            limit = 0
        token = query.get("continue")
        with self.lock:
            if token:
                try:
                    t = json.loads(base64.b64decode(token + "=" * (-len(token) % 4), validate=False).decode())
                    rv = int(t["rv"])
                    start = t["start"]
                    if t.get("v") != "meta.k8s.io/v1" or not isinstance(start, str):
                        raise ValueError("bad version")
                except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
                    raise err_bad_request("continue key is not valid: %s" % e) from None
                items = self.store.snapshot(res.plural, rv, make=False)
                if items is None:
                    newtok = encode_continue(self.store.rv, start)
                    self.store.snapshot(res.plural, self.store.rv)
                    err = err_expired("The provided continue parameter is too old to display a consistent list result. You can start a "
                                      "new list without the continue parameter, or use the continue token in this response to "
                                      "retrieve the remainder of the results. Continuing with the provided token results in an "
                                      "inconsistent list - objects that were created, modified, or deleted between the time the "
                                      "first chunk was returned and now may show up in the list.")
                    err.status["metadata"] = {"continue": newtok}
                    raise err
            else:
                rv = self.store.rv
                items = None
                start = ""
            source = items if items is not None else sorted(self.store.objs[res.plural].items())
            keys = [storage_key(k) for k, _ in source]
            i = bisect.bisect_left(keys, start) if start else 0
            out = []
            more = False
            last = None
            remaining = 0
            while i < len(source):
                k, o = source[i]
                i += 1
                if ns is not None and k[0] != ns:
                    continue
                if not selector_matches(lsel, o["metadata"].get("labels")) or not field_selector_matches(fsel, o):
                    continue
                if limit and len(out) >= limit:
                    more = True
                    remaining = 1 + sum(1 for k2, _ in source[i:] if ns is None or k2[0] == ns)
                    break
                out.append(o)
                last = storage_key(k)
            meta = {"resourceVersion": str(rv)}
            if more:
                if items is None:
                    self.store.snapshot(res.plural, rv)
                meta["continue"] = encode_continue(rv, last + "\x00")
                if not lsel and not fsel:
                    meta["remainingItemCount"] = remaining
        lst = {"kind": res.kind + "List", "apiVersion": res.api_version, "metadata": meta,
               "items": [{k: v for k, v in o.items() if k not in ("kind", "apiVersion")} for o in out]}
        return lst

    def selectors(self, res, query):
        try:
            lsel = parse_label_selector(query.get("labelSelector") or "")
        except SelectorError as e:
            raise err_bad_request(str(e)) from None
        try:
            fsel = parse_field_selector(query.get("fieldSelector") or "", res)
        except SelectorError as e:
            raise err_bad_request(str(e)) from None
        return lsel, fsel

    # -- faults
    def add_fault(self, f):
        if not isinstance(f, dict) or f.get("type") not in FAULT_TYPES:
            raise ValueError("a fault is an object whose type is one of: " + ", ".join(FAULT_TYPES))
        for k in ("count",):
            if k in f and (not is_int(f[k]) or f[k] < 1):
                raise ValueError("count must be a positive integer")
        if f["type"] == "slow" and not isinstance(f.get("delay_s"), (int, float)):
            raise ValueError("a slow fault needs delay_s (seconds)")
        with self.lock:
            self.fault_seq += 1
            f = dict(f, id=self.fault_seq)
            if f["type"] == "expire_watches":
                self.store.expire()
                return dict(f, applied=True)
            self.faults.append(f)
            if f.get("recreate") and f["type"] in POD_FAULTS:
                for key, names in list(self.controller.owner_pods.items()):
                    if (not f.get("namespace") or f["namespace"] == key[1]) and (not f.get("name") or f["name"] == key[2]):
                        for pn in list(names):
                            p = self.store.get("pods", key[1], pn)
                            if p:
                                self.controller.delete_pod(p)
            self.touch_all()
            return f

    def clear_faults(self, fid=None):
        with self.lock:
            if fid is None:
                gone = self.faults
                self.faults = []
            else:
                gone = [f for f in self.faults if f["id"] == fid]
                self.faults = [f for f in self.faults if f["id"] != fid]
            self.touch_all()
            return gone

    def touch_all(self):
        for plural in WORKLOADS + ("services",):
            for (ns, name) in self.store.objs[plural]:
                self.controller.mark((plural, ns, name))

    def take_fault(self, ftype, method, path):
        """The first fault of this type that applies to this request, used up once its count is spent."""
        with self.lock:
            for f in self.faults:
                if f["type"] != ftype:
                    continue
                if f.get("path") and f["path"] not in path:
                    continue
                if f.get("method") and f["method"].upper() != method:
                    continue
                if "count" in f:
                    f["count"] -= 1
                    if f["count"] <= 0:
                        self.faults.remove(f)
                return f
        return None


def storage_key(k):
    ns, name = k
    return ns + "/" + name if ns else name


def encode_continue(rv, start):
    raw = json.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": start}, separators=(",", ":")).encode()
    return base64.b64encode(raw).decode().rstrip("=")


def go_json_type(v):
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    if v is None:
        return "null"
    return "object"


def schema_type_name(schema):
    t = schema.get("type")
    if isinstance(t, list):
        t = [x for x in t if x != "null"][0] if [x for x in t if x != "null"] else "null"
    fmt = schema.get("format")
    if t == "integer":
        return fmt or "int64"
    if t == "object":
        return "struct" if schema.get("properties") else "map[string]string"
    if t == "array":
        return "[]" + schema_type_name(schema.get("items") or {})
    if "oneOf" in schema:
        return "intstr.IntOrString"
    return t or "value"


# ----------------------------------------------------------------------------------------------
# Discovery and server-side tables (what kubectl asks for)


def discovery_resources(group):
    out = []
    for r in RESOURCES.values():
        if r.group != group:
            continue
        d = {"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced, "kind": r.kind, "verbs": sorted(r.verbs)}
        if r.short:
            d["shortNames"] = r.short
        if r.plural in ("pods", "services", "deployments", "statefulsets", "persistentvolumeclaims"):
            d["categories"] = ["all"] if r.plural != "persistentvolumeclaims" else []
            if not d["categories"]:
                del d["categories"]
        d["storageVersionHash"] = base64.b64encode(hashlib.sha256(r.kind.encode()).digest()[:8]).decode()
        out.append(d)
        for sub in r.subresources:
            out.append({"name": r.plural + "/" + sub, "singularName": "", "namespaced": r.namespaced, "group": "autoscaling",
                        "version": "v1", "kind": "Scale", "verbs": ["get", "patch", "update"]})
    return out


def human_duration(seconds):
    s = int(max(seconds, 0))
    if s < 120:
        return "%ds" % s
    m = s // 60
    if m < 10:
        return "%dm%ds" % (m, s % 60) if s % 60 else "%dm" % m
    if m < 180:
        return "%dm" % m
    h = m // 60
    if h < 8:
        return "%dh%dm" % (h, m % 60) if m % 60 else "%dh" % h
    if h < 48:
        return "%dh" % h
    d = h // 24
    if d < 8:
        return "%dd%dh" % (d, h % 24) if h % 24 else "%dd" % d
    if d < 365 * 2:
        return "%dd" % d
    return "%dy" % (d // 365)


def age(obj):
    t = parse_rfc3339(obj["metadata"].get("creationTimestamp"))
    return human_duration(time.time() - t) if t else "<unknown>"


def pod_phase_reason(p):
    st = p.get("status") or {}
    reason = st.get("phase") or "Unknown"
    for cs in st.get("containerStatuses") or []:
        w = (cs.get("state") or {}).get("waiting")
        if w and w.get("reason"):
            reason = w["reason"]
    if p["metadata"].get("deletionTimestamp"):
        reason = "Terminating"
    return reason


def table_columns(plural):
    c = lambda name, typ="string", fmt="", prio=0: {"name": name, "type": typ, "format": fmt, "description": name, "priority": prio}
    return {
        "pods": [c("Name", fmt="name"), c("Ready"), c("Status"), c("Restarts", "string"), c("Age"), c("IP", prio=1), c("Node", prio=1)],
        "deployments": [c("Name", fmt="name"), c("Ready"), c("Up-to-date", "integer"), c("Available", "integer"), c("Age"),
                        c("Containers", prio=1), c("Images", prio=1), c("Selector", prio=1)],
        "statefulsets": [c("Name", fmt="name"), c("Ready"), c("Age"), c("Containers", prio=1), c("Images", prio=1)],
        "services": [c("Name", fmt="name"), c("Type"), c("Cluster-IP"), c("External-IP"), c("Port(s)"), c("Age"),
                     c("Selector", prio=1)],
        "persistentvolumeclaims": [c("Name", fmt="name"), c("Status"), c("Volume"), c("Capacity"), c("Access Modes"),
                                   c("StorageClass"), c("VolumeAttributesClass"), c("Age"), c("VolumeMode", prio=1)],
        "namespaces": [c("Name", fmt="name"), c("Status"), c("Age")],
    }[plural]


def table_cells(plural, o):
    st = o.get("status") or {}
    spec = o.get("spec") or {}
    name = o["metadata"]["name"]
    if plural == "pods":
        cs = st.get("containerStatuses") or []
        ready = len([x for x in cs if x.get("ready")])
        restarts = sum(x.get("restartCount", 0) for x in cs)
        return [name, "%d/%d" % (ready, len(spec.get("containers") or [])), pod_phase_reason(o), str(restarts), age(o),
                st.get("podIP") or "<none>", spec.get("nodeName") or "<none>"]
    if plural in ("deployments", "statefulsets"):
        tspec = (spec.get("template") or {}).get("spec") or {}
        ctrs = ",".join(c.get("name", "") for c in tspec.get("containers") or [])
        imgs = ",".join(c.get("image", "") for c in tspec.get("containers") or [])
        ready = "%d/%d" % (st.get("readyReplicas", 0), spec.get("replicas", 0))
        if plural == "deployments":
            return [name, ready, st.get("updatedReplicas", 0), st.get("availableReplicas", 0), age(o), ctrs, imgs,
                    label_selector_string(spec.get("selector"))]
        return [name, ready, age(o), ctrs, imgs]
    if plural == "services":
        ing = (st.get("loadBalancer") or {}).get("ingress") or []
        ext = ",".join(i.get("ip") or i.get("hostname") or "" for i in ing) or (
            "<pending>" if spec.get("type") == "LoadBalancer" else "<none>")
        ports = ",".join(("%d:%d/%s" % (p["port"], p["nodePort"], p.get("protocol", "TCP"))) if p.get("nodePort") else
                         ("%d/%s" % (p["port"], p.get("protocol", "TCP"))) for p in spec.get("ports") or []) or "<none>"
        sel = ",".join("%s=%s" % kv for kv in sorted((spec.get("selector") or {}).items())) or "<none>"
        return [name, spec.get("type", "ClusterIP"), spec.get("clusterIP") or "<none>", ext, ports, age(o), sel]
    if plural == "persistentvolumeclaims":
        modes = {"ReadWriteOnce": "RWO", "ReadOnlyMany": "ROX", "ReadWriteMany": "RWX", "ReadWriteOncePod": "RWOP"}
        status = "Terminating" if o["metadata"].get("deletionTimestamp") else st.get("phase", "Pending")
        return [name, status, spec.get("volumeName", ""), (st.get("capacity") or {}).get("storage", ""),
                ",".join(modes.get(m, m) for m in st.get("accessModes") or []), spec.get("storageClassName") or "<unset>",
                "<unset>", age(o), spec.get("volumeMode", "Filesystem")]
    return [name, st.get("phase", ""), age(o)]


def to_table(plural, objs, list_meta):
    rows = []
    for o in objs:
        rows.append({"cells": table_cells(plural, o),
                     "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]}})
    md = {"resourceVersion": list_meta.get("resourceVersion", "")}
    if list_meta.get("continue"):
        md["continue"] = list_meta["continue"]
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": md, "columnDefinitions": table_columns(plural), "rows": rows}


def wants_table(accept):
    for part in (accept or "").split(","):
        params = [x.strip() for x in part.split(";")]
        if params[0] in ("application/json", "*/*") and "as=Table" in params[1:] and "g=meta.k8s.io" in params[1:]:
            return True
    return False


def accepts_json(accept):
    if not accept:
        return True
    for part in accept.split(","):
        mt = part.split(";")[0].strip()
        params = [x.strip() for x in part.split(";")[1:]]
        if mt in ("application/json", "*/*", "application/*", "application/yaml", "application/json-patch+json") and \
                not any(p.startswith("as=") for p in params):
            return True
        if mt == "application/json" and any(p in ("as=Table",) for p in params):
            continue
    return False


# ----------------------------------------------------------------------------------------------
# HTTP


class Done(Exception):
    """The connection must close without an answer."""


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "kube-fake"
    sys_version = ""
    timeout = 300

    def log_message(self, fmt, *args):  # http.server's own lines; ours come from log_request_line
        pass

    def do_GET(self):
        self.dispatch("GET")

    def do_POST(self):
        self.dispatch("POST")

    def do_PUT(self):
        self.dispatch("PUT")

    def do_PATCH(self):
        self.dispatch("PATCH")

    def do_DELETE(self):
        self.dispatch("DELETE")

    def do_HEAD(self):
        self.dispatch("HEAD")

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                line = self.rfile.readline()
                n = int(line.split(b";")[0].strip() or b"0", 16)
                if n == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(n))
                self.rfile.readline()
            return b"".join(chunks)
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def send_response(self, code, message=None):
        # the request goes into the log before its answer can reach the client: whoever has seen an
        # answer (or what it changed) finds the request in /_fake/requests
        self.status_sent = code
        self.record(code)
        super().send_response(code, message)

    def record(self, status):
        entry = getattr(self, "entry", None)
        if entry is None:
            return
        self.entry = None  # once
        entry["status"] = status
        entry["duration_ms"] = round((time.time() - self.started) * 1000, 2)
        fake = self.server.fake
        with fake.stats_lock:
            fake.requests.append(entry)
            if len(fake.requests) > fake.requests_log:
                del fake.requests[: len(fake.requests) - fake.requests_log]
        fake.count_status(status)

    def send_json(self, code, obj, extra_headers=None):
        indent = 2 if "pretty=true" in self.path or "pretty=1" in self.path else None
        body = json.dumps(obj, separators=(",", ": ") if indent else (",", ":"), indent=indent, ensure_ascii=False).encode("utf-8") + \
            b"\n" if obj is not None else b""
        self.send_response(code)
        self.send_header("Audit-Id", str(uuid.uuid4()))
        self.send_header("Cache-Control", "no-cache, private")
        self.send_header("Content-Type", "application/json")
        for k, v in (extra_headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.status_sent = code

    def send_text(self, code, text):
        body = text.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.status_sent = code

    def dispatch(self, method):
        fake = self.server.fake
        t0 = time.time()
        self.status_sent = None
        url = urllib.parse.urlsplit(self.path)
        path = url.path
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query, keep_blank_values=True).items()}
        ctype = self.headers.get("Content-Type", "")
        entry = {"time": now_rfc3339(t0), "method": method, "path": path, "query": url.query, "content_type": ctype,
                 "body_valid": None, "user_agent": self.headers.get("User-Agent", "")}
        self.entry, self.started = (None if path.startswith("/_fake") else entry), t0
        body = b""
        try:
            body = self.read_body()
            if not self.authenticated(fake):
                with fake.stats_lock:
                    fake.stats["unauthorized"] += 1
                self.send_json(401, status_obj(401, "Unauthorized", "Unauthorized"))
                return
            if path.startswith("/_fake/") or path == "/_fake":
                self.control(fake, method, path, query, body)
                return
            self.api(fake, method, path, query, body, ctype, entry)
        except Done:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            entry["status"] = 0
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, socket.timeout):
            self.close_connection = True
        except Exception as e:  # a bug in the fake: answer 500, and say so
            import traceback
            traceback.print_exc()
            fake.violation("fake_error", method, path, "the fake failed: %r" % e)
            if self.status_sent is None:
                try:
                    self.send_json(500, err_internal("kube_fake: %r" % e).status)
                except OSError:
                    pass
        finally:
            if not path.startswith("/_fake"):
                self.record(entry.get("status", 0))  # a dropped connection: no answer was sent
            fake.log("%s %s %s%s %s %.1fms" % (self.client_address[0], method, path, "?" + url.query if url.query else "",
                                               self.status_sent if self.status_sent is not None else "dropped",
                                               (time.time() - t0) * 1000))

    def authenticated(self, fake):
        auth = self.headers.get("Authorization", "")
        tok = fake.token()
        if auth.startswith("Bearer ") and tok:
            import hmac
            if hmac.compare_digest(auth[7:].strip().encode(), tok.encode()):
                return True
        try:
            cert = self.connection.getpeercert()
        except (AttributeError, ValueError, ssl.SSLError):
            cert = None
        return bool(cert)

    # -- the control API
    def control(self, fake, method, path, query, body):
        def jbody():
            try:
                return json.loads(body.decode() or "{}")
            except ValueError:
                return None

        if path == "/_fake/violations":
            if method == "GET":
                with fake.stats_lock:
                    return self.send_json(200, list(fake.violations))
            if method == "DELETE":
                with fake.stats_lock:
                    n = len(fake.violations)
                    fake.violations.clear()
                return self.send_json(200, {"cleared": n})
        elif path == "/_fake/faults":
            if method == "GET":
                with fake.lock:
                    return self.send_json(200, list(fake.faults))
            if method == "POST":
                try:
                    return self.send_json(201, fake.add_fault(jbody()))
                except ValueError as e:
                    return self.send_json(400, {"error": str(e)})
            if method == "DELETE":
                return self.send_json(200, {"cleared": fake.clear_faults()})
        elif path.startswith("/_fake/faults/") and method == "DELETE":
            try:
                fid = int(path.rsplit("/", 1)[1])
            except ValueError:
                return self.send_json(400, {"error": "a fault id is an integer"})
            gone = fake.clear_faults(fid)
            return self.send_json(200 if gone else 404, {"cleared": gone})
        elif path == "/_fake/stats" and method == "GET":
            with fake.stats_lock:
                return self.send_json(200, deep(fake.stats))
        elif path == "/_fake/stats/reset" and method == "POST":
            fake.reset_stats()
            return self.send_json(200, {"reset": True})
        elif path == "/_fake/requests":
            if method == "GET":
                n = int(query.get("limit") or 0)
                with fake.stats_lock:
                    reqs = list(fake.requests)
                return self.send_json(200, reqs[-n:] if n else reqs)
            if method == "DELETE":
                with fake.stats_lock:
                    fake.requests.clear()
                return self.send_json(200, {"cleared": True})
        elif path == "/_fake/config":
            if method == "GET":
                return self.send_json(200, fake.config)
            if method == "POST":
                b = jbody()
                if not isinstance(b, dict) or any(k not in DEFAULT_CONFIG or not isinstance(v, (int, float)) or isinstance(v, bool)
                                                  or v < 0 for k, v in b.items()):
                    return self.send_json(400, {"error": "config keys (numbers >= 0): " + ", ".join(DEFAULT_CONFIG)})
                with fake.lock:
                    fake.config.update({k: float(v) for k, v in b.items()})
                return self.send_json(200, fake.config)
        self.send_json(404, {"error": "no such control endpoint: %s %s" % (method, path)})

    # -- the Kubernetes API
    def api(self, fake, method, path, query, body, ctype, entry):
        route = parse_route(path)
        verb, resource = classify(method, route, query)
        entry["verb"] = verb
        entry["resource"] = resource
        if route and "res" in route:
            entry["namespace"] = route.get("ns")
            entry["name"] = route.get("name")
        fake.count(verb, resource)
        if fake.take_fault("drop", method, path):
            raise Done()
        slow = fake.take_fault("slow", method, path)
        if slow:
            time.sleep(float(slow["delay_s"]))
        f = fake.take_fault("http_500", method, path)
        if f:
            msg = f.get("message") or "kube_fake: injected fault"
            return self.send_json(500, err_internal(msg).status)
        f = fake.take_fault("http_429", method, path)
        if f:
            retry = int(f.get("retry_after_s", 1))
            return self.send_json(429, status_obj(429, "TooManyRequests", "Too many requests, please try again later.",
                                                  {"retryAfterSeconds": retry}), {"Retry-After": str(retry)})
        accept = self.headers.get("Accept", "")
        try:
            if route is None:
                if path in ("/healthz", "/livez", "/readyz"):
                    return self.send_text(200, "ok")
                fake.violation("unsupported", method, path, "the fake does not serve this path (a real API server answers 404 "
                                                            "page not found for a path it does not know, or may serve it)")
                return self.send_text(404, "404 page not found\n")
            if "discovery" in route:
                return self.discovery(fake, route, accept)
            res = route["res"]
            ns, name, sub = route.get("ns"), route.get("name"), route.get("sub")
            if verb in ("get", "list", "watch") and not accepts_json(accept) and not wants_table(accept):
                raise ApiError(status_obj(406, "NotAcceptable", "only the following media types are accepted: application/json, "
                                          "application/yaml, application/vnd.kubernetes.protobuf, application/cbor"))
            allowed = res.verbs if sub is None else ["get", "patch", "update"]
            if verb not in allowed or (ns is None and res.namespaced and verb not in ("list", "watch")):
                raise err_method_not_allowed()
            query_dry = query.get("dryRun") == "All"
            if verb == "list":
                lst = fake.list(res, ns, query)
                fake.check_list(res, lst)
                if wants_table(accept):
                    with fake.lock:
                        objs = [fake.store.get(res.plural, i["metadata"].get("namespace", ""), i["metadata"]["name"]) or
                                dict(i, kind=res.kind) for i in lst["items"]]
                    return self.send_json(200, to_table(res.plural, objs, lst["metadata"]))
                return self.send_json(200, lst)
            if verb == "watch":
                return self.watch(fake, res, ns, query)
            if verb == "get":
                with fake.lock:
                    obj = fake.store.get(res.plural, ns, name)
                if obj is None:
                    raise err_not_found(res, name)
                if sub == "scale":
                    obj = fake.scale_of(res, obj)
                    fake.check_out("Scale", obj)
                elif wants_table(accept):
                    return self.send_json(200, to_table(res.plural, [obj], {"resourceVersion": obj["metadata"]["resourceVersion"]}))
                return self.send_json(200, obj)
            if verb == "create":
                obj = fake.decode(body, ctype, res.kind)
                entry["body_valid"] = False
                out = fake.create(res, ns, obj, query, query_dry)
                entry["body_valid"] = True
                return self.send_json(201, out)
            if verb == "update":
                obj = fake.decode(body, ctype, "Scale" if sub else res.kind)
                entry["body_valid"] = False
                if sub == "scale":
                    out = fake.update_scale(res, ns, name, obj, query_dry)
                    fake.check_out("Scale", out)
                else:
                    out = fake.update(res, ns, name, obj, query, query_dry)
                entry["body_valid"] = True
                return self.send_json(200, out)
            if verb == "patch":
                entry["body_valid"] = False
                out, code = fake.patch(res, ns, name, sub, body, ctype, query)
                if sub == "scale":
                    fake.check_out("Scale", out)
                entry["body_valid"] = True
                return self.send_json(code, out)
            if verb == "delete":
                out = fake.delete(res, ns, name, query, body)
                if out.get("kind") == "Status":
                    fake.check_out("Status", out)
                return self.send_json(200, out)
            raise err_method_not_allowed()
        except ApiError as e:
            if e.violation:
                body_json = None
                try:
                    body_json = json.loads(body.decode()) if body else None
                except ValueError:
                    body_json = body.decode("utf-8", "replace")[:2000]
                errors = e.errors or [c.get("field", "") + ": " + c.get("message", "")
                                      for c in (e.status.get("details") or {}).get("causes") or []]
                fake.violation(e.violation, method, path + ("?" + urllib.parse.urlencode(query) if query else ""),
                               e.status.get("message", ""), errors, body_json)
            fake.check_out("Status", e.status)
            return self.send_json(e.code, e.status, e.headers)

    def discovery(self, fake, route, accept):
        d = route["discovery"]
        host = self.server.server_address[0]
        port = self.server.server_address[1]
        if d == "version":
            return self.send_json(200, SERVER_VERSION)
        if d == "api":
            return self.send_json(200, {"kind": "APIVersions", "versions": ["v1"],
                                        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0",
                                                                        "serverAddress": "%s:%d" % (host, port)}]})
        if d == "apis":
            groups = []
            for g in ("apps", "autoscaling"):
                gv = {"groupVersion": g + "/v1", "version": "v1"}
                groups.append({"name": g, "versions": [gv], "preferredVersion": gv})
            return self.send_json(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
        if d in ("apps", "autoscaling") and route.get("group_only"):
            gv = {"groupVersion": d + "/v1", "version": "v1"}
            return self.send_json(200, {"kind": "APIGroup", "apiVersion": "v1", "name": d, "versions": [gv], "preferredVersion": gv})
        if d in ("", "apps", "autoscaling"):
            return self.send_json(200, {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": (d + "/v1") if d else "v1",
                                        "resources": discovery_resources(d)})
        return self.send_text(404, "404 page not found\n")

    # -- watch
    def write_chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def send_event(self, fake, etype, obj):
        fake.check_out(obj.get("kind", "Status") if etype != "ERROR" else "Status", obj, etype == "BOOKMARK")
        self.write_chunk(json.dumps({"type": etype, "object": obj}, separators=(",", ":"), ensure_ascii=False).encode() + b"\n")

    def watch(self, fake, res, ns, query):
        lsel, fsel = fake.selectors(res, query)
        rvq = query.get("resourceVersion", "")
        bookmarks = query.get("allowWatchBookmarks") in ("true", "1")
        send_initial = query.get("sendInitialEvents") in ("true", "1")
        if send_initial and (query.get("resourceVersionMatch") != "NotOlderThan" or not bookmarks):
            fe = FieldErrors()
            if query.get("resourceVersionMatch") != "NotOlderThan":
                fe.forbidden("resourceVersionMatch", "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan")
            if not bookmarks:
                fe.forbidden("allowWatchBookmarks", "sendInitialEvents requires setting allowWatchBookmarks to true")
            raise err_invalid("ListOptions", "meta.k8s.io", "", fe)
        try:
            timeout = float(query["timeoutSeconds"]) if query.get("timeoutSeconds") else fake.config["watch_timeout_s"]
        except ValueError:
            raise err_bad_request("invalid value for timeoutSeconds") from None
        if rvq not in ("", "0"):
            try:
                start_rv = int(rvq)
            except ValueError:
                raise err_bad_request('invalid resource version: %s' % rvq) from None
        else:
            start_rv = None

        def matches(o):
            md = o["metadata"]
            if ns is not None and md.get("namespace") != ns:
                return False
            return selector_matches(lsel, md.get("labels")) and field_selector_matches(fsel, o)

        initial = []
        store = fake.store
        with fake.lock:
            if start_rv is not None and start_rv > store.rv:
                deadline = time.time() + 3
                while start_rv > store.rv and time.time() < deadline and not store.stopping:
                    store.cond.wait(0.2)
            cur = store.rv
            epoch = store.epoch
            err = None
            if start_rv is None or send_initial:
                initial = [o for _, o in sorted(store.objs[res.plural].items()) if matches(o)]
                last = cur
            elif start_rv > cur:
                err = status_obj(504, "Timeout", "Timeout: Too large resource version: %d, current: %d" % (start_rv, cur),
                                 {"causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
                                  "retryAfterSeconds": 1})
                last = cur
            elif start_rv < store.compacted:
                err = status_obj(410, "Expired", "too old resource version: %d (%d)" % (start_rv, store.compacted))
                last = cur
            else:
                last = start_rv
        self.send_response(200)
        self.send_header("Audit-Id", str(uuid.uuid4()))
        self.send_header("Cache-Control", "no-cache, private")
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.status_sent = 200
        fake.watches(1)
        try:
            if err:
                self.send_event(fake, "ERROR", err)
                self.write_chunk(b"")
                return
            for o in initial:
                self.send_event(fake, "ADDED", o)
            if send_initial:
                self.send_event(fake, "BOOKMARK", bookmark(res, last, initial_end=True))
            t_end = time.time() + timeout
            interval = fake.config["bookmark_interval_s"]
            next_bm = time.time() + interval
            while True:
                with fake.lock:
                    while store.rv == last and store.epoch == epoch and not store.stopping:
                        wait = min(t_end, next_bm if bookmarks else t_end) - time.time()
                        if wait <= 0:
                            break
                        store.cond.wait(min(wait, 1.0))
                    if store.stopping:
                        break
                    if store.epoch != epoch or last < store.compacted:
                        err = status_obj(410, "Expired", "The resourceVersion for the provided watch is too old.")
                        events = []
                    else:
                        events = store.events_after(last)
                        last = store.rv
                if err:
                    self.send_event(fake, "ERROR", err)
                    break
                for ev in events:
                    if ev.plural != res.plural:
                        continue
                    now_match = matches(ev.obj) if ev.type != "DELETED" else False
                    old_match = matches(ev.old) if ev.old is not None else False
                    if ev.type == "DELETED":
                        if matches(ev.obj):
                            self.send_event(fake, "DELETED", ev.obj)
                    elif now_match and old_match:
                        self.send_event(fake, "MODIFIED", ev.obj)
                    elif now_match:
                        self.send_event(fake, "ADDED", ev.obj)
                    elif old_match:
                        gone = deep(ev.old)
                        gone["metadata"]["resourceVersion"] = ev.obj["metadata"]["resourceVersion"]
                        self.send_event(fake, "DELETED", gone)
                now = time.time()
                if now >= t_end:
                    if bookmarks:
                        self.send_event(fake, "BOOKMARK", bookmark(res, last))
                    break
                if bookmarks and now >= next_bm:
                    self.send_event(fake, "BOOKMARK", bookmark(res, last))
                    next_bm = now + fake.config["bookmark_interval_s"]
            self.write_chunk(b"")
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            self.close_connection = True
        finally:
            fake.watches(-1)


def bookmark(res, rv, initial_end=False):
    md = {"resourceVersion": str(rv)}
    if initial_end:
        md["annotations"] = {"k8s.io/initial-events-end": "true"}
    return {"kind": res.kind, "apiVersion": res.api_version, "metadata": md}


def parse_route(path):
    """{'discovery': ...} or {'res', 'ns', 'name', 'sub'}; None for a path the API server does not serve."""
    parts = [urllib.parse.unquote(p) for p in path.rstrip("/").split("/")[1:]] if path != "/" else []
    if path == "/version":
        return {"discovery": "version"}
    if parts == ["api"]:
        return {"discovery": "api"}
    if parts == ["apis"]:
        return {"discovery": "apis"}
    if parts[:2] == ["api", "v1"]:
        group, rest = "", parts[2:]
    elif len(parts) >= 2 and parts[0] == "apis" and parts[1] in ("apps", "autoscaling"):
        if len(parts) == 2:
            return {"discovery": parts[1], "group_only": True}
        if parts[2] != "v1":
            return None
        group, rest = parts[1], parts[3:]
    else:
        return None
    if not rest:
        return {"discovery": group}
    ns = None
    if rest[0] == "namespaces" and len(rest) >= 3:
        r = RESOURCES.get(rest[2])
        if r is not None and r.namespaced:
            ns, rest = rest[1], rest[2:]
    res = RESOURCES.get(rest[0])
    if res is None or res.group != group or len(rest) > 3:
        return None
    name = rest[1] if len(rest) > 1 else None
    sub = rest[2] if len(rest) > 2 else None
    if sub is not None and sub not in res.subresources:
        return None
    if res.namespaced and ns is None and name is not None:
        return None
    if name == "":
        return None
    return {"res": res, "ns": ns, "name": name, "sub": sub}


def classify(method, route, query):
    if route is None:
        return method.lower(), "(none)"
    if "discovery" in route:
        return "discovery", route["discovery"] or "core"
    res = route["res"]
    resource = res.plural + ("/" + route["sub"] if route.get("sub") else "")
    if method in ("GET", "HEAD"):
        if route.get("name"):
            return "get", resource
        return ("watch" if query.get("watch") in ("1", "true") else "list"), resource
    if method == "POST":
        return ("create" if not route.get("name") else "post"), resource
    if method == "PUT":
        return "update", resource
    if method == "PATCH":
        return "patch", resource
    if method == "DELETE":
        return ("delete" if route.get("name") else "deletecollection"), resource
    return method.lower(), resource


# ----------------------------------------------------------------------------------------------
# TLS: a CA made at start (or the one the test passes), a server certificate for the address
# served, and a client certificate that the fake also accepts instead of the token


def make_pki(state_dir, host, ca_cert_file=None, ca_key_file=None):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=5)
    later = now + datetime.timedelta(days=3650)

    def write(name, data, mode=0o644):
        path = os.path.join(state_dir, name)
        with open(path + ".tmp", "wb") as f:
            f.write(data)
        os.chmod(path + ".tmp", mode)
        os.replace(path + ".tmp", path)
        return path

    if ca_cert_file:
        with open(ca_cert_file, "rb") as f:
            ca_pem = f.read()
        with open(ca_key_file, "rb") as f:
            ca_key = serialization.load_pem_private_key(f.read(), None)
        ca = x509.load_pem_x509_certificate(ca_pem)
    else:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-fake-ca")])
        ca = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(ca_key.public_key())
              .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(later)
              .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
              .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                           key_encipherment=False, data_encipherment=False, key_agreement=False,
                                           encipher_only=False, decipher_only=False), critical=True)
              .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
              .sign(ca_key, hashes.SHA256()))
        ca_pem = ca.public_bytes(serialization.Encoding.PEM)
        write("ca.key", ca_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()), 0o600)
    ca_path = write("ca.crt", ca_pem)

    def leaf(cn, org, sans, eku):
        key = ec.generate_private_key(ec.SECP256R1())
        attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
        if org:
            attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
        b = (x509.CertificateBuilder().subject_name(x509.Name(attrs)).issuer_name(ca.subject).public_key(key.public_key())
             .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(later)
             .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
             .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False, key_cert_sign=False, crl_sign=False,
                                          content_commitment=False, data_encipherment=False, key_agreement=False,
                                          encipher_only=False, decipher_only=False), critical=True)
             .add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
             .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.public_key()), critical=False))
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = b.sign(ca_key, hashes.SHA256())
        return (cert.public_bytes(serialization.Encoding.PEM),
                key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))

    sans = [x509.DNSName("localhost"), x509.DNSName("kubernetes"), x509.DNSName("kubernetes.default.svc"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.IPAddress(ipaddress.ip_address("::1"))]
    try:
        ip = ipaddress.ip_address(host)
        if str(ip) not in ("127.0.0.1", "::1"):
            sans.append(x509.IPAddress(ip))
    except ValueError:
        if host not in ("localhost",):
            sans.append(x509.DNSName(host))
    crt, key = leaf("kube-apiserver", None, sans, ExtendedKeyUsageOID.SERVER_AUTH)
    server_crt = write("server.crt", crt)
    server_key = write("server.key", key, 0o600)
    crt, key = leaf("emp-test", "system:masters", None, ExtendedKeyUsageOID.CLIENT_AUTH)
    client_crt = write("client.crt", crt)
    client_key = write("client.key", key, 0o600)
    return ca_path, server_crt, server_key, client_crt, client_key


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr, fake, ssl_ctx):
        self.fake = fake
        self.ssl_ctx = ssl_ctx
        self.address_family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
        super().__init__(addr, Handler)

    def finish_request(self, request, client_address):
        # The TLS handshake happens here, in the connection's own thread, not in the accept loop
        request.settimeout(30)
        try:
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        try:
            tls = self.ssl_ctx.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as e:
            self.fake.log("%s TLS handshake failed: %s" % (client_address[0], e))
            return
        try:
            tls.settimeout(Handler.timeout)
            self.RequestHandlerClass(tls, client_address, self)
        finally:
            try:
                tls.close()
            except OSError:
                pass

    def handle_error(self, request, client_address):
        pass


def write_kubeconfig(path, url, ca, token_file, client_crt=None, client_key=None):
    cfg = {
        "apiVersion": "v1", "kind": "Config", "preferences": {},
        "clusters": [{"name": "kube-fake", "cluster": {"server": url, "certificate-authority": ca}}],
        "users": [{"name": "kube-fake", "user": {"tokenFile": token_file}}],
        "contexts": [{"name": "kube-fake", "context": {"cluster": "kube-fake", "user": "kube-fake", "namespace": "default"}}],
        "current-context": "kube-fake",
    }
    if client_crt:
        cfg["users"].append({"name": "kube-fake-cert", "user": {"client-certificate": client_crt, "client-key": client_key}})
        cfg["contexts"].append({"name": "kube-fake-cert", "context": {"cluster": "kube-fake", "user": "kube-fake-cert",
                                                                      "namespace": "default"}})
    with open(path + ".tmp", "w") as f:
        yaml.safe_dump(cfg, f, default_flow_style=False, sort_keys=False)
    os.replace(path + ".tmp", path)


def main(argv=None):
    ap = argparse.ArgumentParser(description="A strict, in-memory Kubernetes API server for tests.")
    ap.add_argument("--state-dir", required=True, help="where the CA, certificates, kubeconfig and ready.json go")
    ap.add_argument("--token-file", required=True, help="the bearer token clients must send (re-read when it changes)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0: any free port (see ready.json)")
    ap.add_argument("--ca-cert", help="sign the server certificate with this CA (PEM) instead of making one")
    ap.add_argument("--ca-key", help="the key of --ca-cert (PEM)")
    ap.add_argument("--ready-delay", type=float, help="seconds from a pod's creation to Ready (default 0.2)")
    ap.add_argument("--lb-delay", type=float, help="seconds from a LoadBalancer Service's creation to its ingress IP (default 0.3)")
    ap.add_argument("--history-size", type=int, default=10000, help="changes kept for watches to resume from")
    ap.add_argument("--node-port-range", default="30000-32767")
    ap.add_argument("--quiet", action="store_true", help="no request log on stderr")
    args = ap.parse_args(argv)
    if bool(args.ca_cert) != bool(args.ca_key):
        ap.error("--ca-cert and --ca-key go together")
    state_dir = os.path.abspath(args.state_dir)
    os.makedirs(state_dir, exist_ok=True)
    token_file = os.path.abspath(args.token_file)
    lo, hi = (int(x) for x in args.node_port_range.split("-"))

    fake = Fake(token_file, (lo, hi), args.history_size)
    fake.quiet = args.quiet
    if args.ready_delay is not None:
        fake.config["ready_delay_s"] = args.ready_delay
    if args.lb_delay is not None:
        fake.config["lb_delay_s"] = args.lb_delay
    ca, server_crt, server_key, client_crt, client_key = make_pki(state_dir, args.host, args.ca_cert, args.ca_key)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(server_crt, server_key)
    ctx.load_verify_locations(ca)
    ctx.verify_mode = ssl.CERT_OPTIONAL
    ctx.set_alpn_protocols(["http/1.1"])
    server = Server((args.host, args.port), fake, ctx)
    port = server.server_address[1]
    host = args.host if ":" not in args.host else "[%s]" % args.host
    url = "https://%s:%d" % (host, port)
    kubeconfig = os.path.join(state_dir, "kubeconfig")
    write_kubeconfig(kubeconfig, url, ca, token_file, client_crt, client_key)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    fake.controller.thread.start()
    serve = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="serve", daemon=True)
    serve.start()
    ready = {"url": url, "ca": ca, "token_file": token_file, "kubeconfig": kubeconfig, "client_cert": client_crt,
             "client_key": client_key, "pid": os.getpid(), "port": port}
    ready_path = os.path.join(state_dir, "ready.json")
    with open(ready_path + ".tmp", "w") as f:
        json.dump(ready, f, indent=2)
    os.replace(ready_path + ".tmp", ready_path)
    fake.log("serving %s (state in %s)" % (url, state_dir))
    while not stop.wait(0.5):
        pass
    fake.log("stopping")
    with fake.lock:
        fake.store.stopping = True
        fake.store.cond.notify_all()
    fake.controller.wake.set()
    server.shutdown()
    server.server_close()
    try:
        os.unlink(ready_path)
    except OSError:
        pass
    fake.log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
