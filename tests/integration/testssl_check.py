#!/usr/bin/env python3
"""Judge a testssl.sh flat JSON report (--jsonfile) against torii's TLS policy.

Usage: testssl_check.py REPORT.json ALLOW_LIST

Fails (exit 1), naming every offending finding, when:
  - a finding has severity MEDIUM, HIGH or CRITICAL and its id is not allow-listed;
  - testssl.sh reports a FATAL scan problem;
  - a section the scan must cover is missing from the report (the scan did not run);
  - torii's policy is broken where testssl.sh 3.0 grades it only LOW: a protocol below
    TLS 1.2 offered (TLS 1.2 and 1.3 only), a CBC or 3DES/IDEA suite offered (AEAD suites
    only), or TLS 1.2 / TLS 1.3 / AEAD suites / forward secrecy not offered;
  - a served certificate does not chain to the trust anchor given with --add-ca;
  - an allow-list line has no '#' justification.
Ids of per-certificate findings carry a " <cert#N>" suffix in the report; the allow-list
names the id without it.
"""
import json
import re
import sys

GATED = ("MEDIUM", "HIGH", "CRITICAL")
# Ids that each section the test asks for (-p -s -f -P -S -U) reports: absent means it did
# not run. Alternatives: testssl.sh 3.0 names (Debian 12) or 3.2.
REQUIRED = (("TLS1_2",), ("TLS1_3",), ("cipherlist_NULL",), ("PFS", "FS"), ("cipher_order",),
            ("cert_chain_of_trust",), ("heartbleed",), ("secure_client_renego",),
            ("CRIME_TLS",), ("ROBOT",), ("LOGJAM",))
NOT_OFFERED = ("SSLv2", "SSLv3", "TLS1", "TLS1_1", "cipherlist_AVERAGE", "cipherlist_OBSOLETED",
               "cipherlist_3DES_IDEA", "cipherlist_STRONG_NOFS")
OFFERED = ("TLS1_2", "TLS1_3", "cipherlist_STRONG", "cipherlist_STRONG_FS", "PFS", "FS")


def base_id(finding_id):
    return re.sub(r" <cert#\d+>$", "", finding_id)


def read_allow(path, problems):
    allow = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            fid, sep, why = text.partition("#")
            fid = fid.strip()
            if not sep or not why.strip() or " " in fid:
                problems.append(f"{path}:{n}: '{text}' is not '<id> # <justification>'")
                continue
            allow[fid] = why.strip()
    return allow


def check(findings, allow, problems):
    seen = {base_id(f.get("id", "")) for f in findings}
    for alts in REQUIRED:
        if not seen.intersection(alts):
            problems.append(f"section missing from the report: no '{'/'.join(alts)}' finding")
    used = set()
    for f in findings:
        fid, sev, text = f.get("id", ""), f.get("severity", ""), f.get("finding", "")
        bid = base_id(fid)
        if sev == "FATAL":
            problems.append(f"scan problem: {fid}: {text}")
        elif sev in GATED and bid in allow:
            used.add(bid)
            print(f"allowed {sev} {fid}: {text} ({allow[bid]})")
        elif sev in GATED:
            problems.append(f"{sev} {fid}: {text}")
        elif sev == "LOW":
            print(f"note: LOW {fid}: {text}")
        if bid in NOT_OFFERED and not text.startswith("not offered"):
            problems.append(f"against torii's TLS policy: {fid}: {text}")
        if bid in OFFERED and not text.startswith("offered"):
            problems.append(f"missing from torii's TLS policy: {fid}: {text}")
        if bid == "cert_chain_of_trust" and sev != "OK":
            problems.append(f"certificate does not chain to the trust anchor: {fid}: {text}")
    for stale in sorted(set(allow) - used):
        print(f"note: allow-listed id '{stale}' was not reported at MEDIUM or above")


def main(argv):
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    problems = []
    allow = read_allow(argv[2], problems)
    with open(argv[1], encoding="utf-8") as f:
        findings = json.load(f)
    if not isinstance(findings, list) or not findings:
        problems.append(f"{argv[1]}: not a non-empty testssl.sh flat JSON list")
    else:
        check(findings, allow, problems)
    for p in problems:
        print(f"FINDING: {p}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
