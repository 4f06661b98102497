"""Runs the scim2-tester checks against a SCIM service provider and prints one closing line,
"N passed, M failed[, K skipped]".

    python check.py BASE_URL [RESULTS_JSON]      (bearer token in $SCIM_TOKEN)

Statuses count as scim2-tester defines them: SUCCESS, COMPLIANT and ACCEPTABLE pass; ERROR,
CRITICAL and DEVIATION fail; SKIPPED is reported apart. Every failing check is printed with
its reason, so a CI log says what broke without the JSON.
"""

import json
import os
import sys

from httpx2 import Client
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import Status, check_server

PASS = {Status.SUCCESS, Status.COMPLIANT, Status.ACCEPTABLE}
FAIL = {Status.ERROR, Status.CRITICAL, Status.DEVIATION}


def main() -> int:
    base_url = sys.argv[1].rstrip("/")
    results_path = sys.argv[2] if len(sys.argv) > 2 else None
    headers = {"Authorization": "Bearer " + os.environ["SCIM_TOKEN"]} if os.environ.get("SCIM_TOKEN") else {}
    # trust_env=False: a proxy from the environment must never see loopback test traffic.
    http = Client(base_url=base_url, headers=headers, timeout=15.0, trust_env=False)
    client = SyncSCIMClient(http)
    client.check_response_content_type = True
    client.check_response_status_codes = True
    results = check_server(client)

    passed = sum(r.status in PASS for r in results)
    failed = sum(r.status in FAIL for r in results)
    skipped = sum(r.status == Status.SKIPPED for r in results)
    for r in results:
        if r.status in FAIL:
            reason = " ".join(str(r.reason or "").split())[:300]
            print(f"{r.status.name:8} [{r.resource_type or '-'}] {r.title}: {reason}")
    if results_path:
        with open(results_path, "w") as out:
            json.dump(
                [{"status": r.status.name, "title": r.title, "resource_type": r.resource_type,
                  "reason": None if r.reason is None else str(r.reason)} for r in results],
                out, indent=2)
    line = f"{passed} passed, {failed} failed"
    print(line + (f", {skipped} skipped" if skipped else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
