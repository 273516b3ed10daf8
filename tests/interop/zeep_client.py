#!/usr/bin/env python3
"""Calls the umws UM web service with zeep, a third-party SOAP client.

Usage:
    zeep_client.py URL USER PASSWORD OP[:JSON-ARGS]...

URL is the service endpoint; the WSDL is loaded from URL?wsdl (with the
schemas it imports, ?xsd=...). Each OP is an operation name, optionally
followed by a colon and a JSON object of keyword arguments, for example
`SetOofStatus:{"status": true}`. The operations are called in order on one
client, authenticated with HTTP Basic through a requests Session on zeep's
Transport.

Prints one JSON document on stdout:

    {"results": [{"op": ..., "outcome": "ok", "value": ...},
                 {"op": ..., "outcome": "fault", "fault": {...}},
                 {"op": ..., "outcome": "http_error", "status": 401}, ...]}

or, when the WSDL cannot be loaded, {"load_error": {...}}. A fault records
the faultcode as written and resolved against the namespaces in scope on the
faultcode element ({"namespace", "local"}), the faultstring and its xml:lang,
and the detail's children (namespace, local name, text). Exit status 0 unless
the script itself is misused.
"""

import json
import sys

import requests
import zeep
import zeep.exceptions
import zeep.helpers
from zeep.plugins import HistoryPlugin

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
XML_NS = "http://www.w3.org/XML/1998/namespace"


def split_op(arg):
    """`Op` or `Op:{json}` -> (name, kwargs)."""
    name, sep, args = arg.partition(":")
    kwargs = json.loads(args) if sep else {}
    if not isinstance(kwargs, dict):
        raise SystemExit(f"arguments of {name} must be a JSON object")
    return name, kwargs


def qname_parts(tag):
    """lxml `{ns}local` -> (ns, local)."""
    if tag.startswith("{"):
        ns, local = tag[1:].split("}", 1)
        return ns, local
    return None, tag


def describe_fault(exc, history):
    """The fault as zeep raised it, completed from the received envelope."""
    fault = {
        "code": exc.code,
        "message": exc.message,
        "actor": exc.actor,
        "namespace": None,
        "local": None,
        "lang": None,
        "detail": [],
    }
    envelope = history.last_received["envelope"] if history.last_received else None
    node = None
    if envelope is not None:
        node = envelope.find(f"{{{SOAP_ENV}}}Body/{{{SOAP_ENV}}}Fault")
    if node is not None:
        code = node.find("faultcode")
        if code is not None and code.text:
            prefix, sep, local = code.text.strip().rpartition(":")
            fault["namespace"] = code.nsmap.get(prefix if sep else None)
            fault["local"] = local
        string = node.find("faultstring")
        if string is not None:
            fault["lang"] = string.get(f"{{{XML_NS}}}lang")
    if exc.detail is not None:
        for child in exc.detail:
            if not isinstance(child.tag, str):
                continue  # comments, processing instructions
            ns, local = qname_parts(child.tag)
            fault["detail"].append(
                {"namespace": ns, "local": local, "text": (child.text or "").strip()}
            )
    return fault


def call(client, history, name, kwargs):
    result = {"op": name, "args": kwargs}
    try:
        value = getattr(client.service, name)(**kwargs)
    except zeep.exceptions.Fault as exc:
        result["outcome"] = "fault"
        result["fault"] = describe_fault(exc, history)
    except zeep.exceptions.TransportError as exc:
        result["outcome"] = "http_error"
        result["status"] = exc.status_code
        result["message"] = str(exc.message)
    else:
        result["outcome"] = "ok"
        result["value"] = zeep.helpers.serialize_object(value, dict)
    return result


def main(argv):
    if len(argv) < 4:
        raise SystemExit(__doc__)
    url, user, password, ops = argv[0], argv[1], argv[2], argv[3:]
    calls = [split_op(op) for op in ops]

    session = requests.Session()
    session.auth = requests.auth.HTTPBasicAuth(user, password)
    transport = zeep.Transport(session=session, timeout=60, operation_timeout=60)
    history = HistoryPlugin()
    try:
        client = zeep.Client(f"{url}?wsdl", transport=transport, plugins=[history])
    except requests.HTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        print(json.dumps({"load_error": {"status": status, "message": str(exc)}}))
        return 0

    results = [call(client, history, name, kwargs) for name, kwargs in calls]
    print(json.dumps({"results": results}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
