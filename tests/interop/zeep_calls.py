#!/usr/bin/env python3
"""Places calls through the umws UM web service with zeep, a third-party SOAP client.

Usage:
    zeep_calls.py URL USER PASSWORD ENTRY_ID ANSWERING RINGING

ENTRY_ID is a voice message of USER; ANSWERING dials a phone that answers and waits for the
end of the message, RINGING one that rings until it is cancelled. The script:

1. PlayOnPhone(ENTRY_ID, ANSWERING), then GetCallInfo every 50 ms until the call is
   Disconnected (at most 60 s), then Disconnect on the finished call;
2. PlayOnPhone(ENTRY_ID, RINGING), GetCallInfo, Disconnect, GetCallInfo.

It prints one `key=value` line a fact (the assertions are made by tests/calls.rs):
`call1=<id>`, `state1=<CallState>/<EventCause>` for every distinct state seen in order,
`disconnect1=ok`, `call2=<id>`, `ringing2=...`, `disconnect2=ok`, `after2=...`; a fault is
printed as `fault=<op>:<faultcode>`. Exit status 0 unless the script itself fails.
"""

import sys
import time

import requests
import zeep
import zeep.exceptions


def info(client, call_id):
    value = client.service.GetCallInfo(CallId=call_id)
    return f"{value['CallState']}/{value['EventCause']}"


def main(argv):
    if len(argv) != 6:
        raise SystemExit(__doc__)
    url, user, password, entry_id, answering, ringing = argv
    session = requests.Session()
    session.auth = requests.auth.HTTPBasicAuth(user, password)
    transport = zeep.Transport(session=session, timeout=60, operation_timeout=60)
    client = zeep.Client(f"{url}?wsdl", transport=transport)
    op = "PlayOnPhone"
    try:
        call_id = client.service.PlayOnPhone(entryId=entry_id, DialString=answering)
        print(f"call1={call_id}")
        op = "GetCallInfo"
        seen = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            state = info(client, call_id)
            if state != seen:
                print(f"state1={state}")
                seen = state
            if state.startswith("Disconnected/"):
                break
            time.sleep(0.05)
        op = "Disconnect"
        client.service.Disconnect(CallId=call_id)
        print("disconnect1=ok")

        op = "PlayOnPhone"
        call_id = client.service.PlayOnPhone(entryId=entry_id, DialString=ringing)
        print(f"call2={call_id}")
        op = "GetCallInfo"
        print(f"ringing2={info(client, call_id)}")
        op = "Disconnect"
        client.service.Disconnect(CallId=call_id)
        print("disconnect2=ok")
        op = "GetCallInfo"
        print(f"after2={info(client, call_id)}")
    except zeep.exceptions.Fault as exc:
        print(f"fault={op}:{exc.code}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
