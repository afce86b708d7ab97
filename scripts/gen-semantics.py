#!/usr/bin/env python3
"""Writes tests/vectors/semantics.json: scenarios of cache operations with
their expected outcomes, run by the Rust, napi and wasm suites alike.

Expectations are spelled out here by hand from the rules in the README
(entry shape, key rules, coherency by name set, summaries), not computed by
brcache, so the scenarios check brcache instead of restating it."""

import json
import pathlib

VM = "vm-1"
D = "/xo-vm-backups/vm-1/"


def k(day):
    return f"{D}2024010{day}T000000Z.json"


def n(day):
    return f"2024010{day}T000000Z.json"


def shaped(day, fields, immutable="false"):
    """The canonical entry text: the record's fields, then isImmutable,
    _filename and id."""
    key = json.dumps(k(day))
    head = fields + "," if fields else ""
    return "{" + head + f'"isImmutable":{immutable},"_filename":{key},"id":{key}' + "}"


def body(*entries):
    return "{" + ",".join(json.dumps(key) + ":" + text for key, text in entries) + "}"


def xo_add(day, fields, key=None):
    key = json.dumps(key or k(day))
    return "{" + fields + f',"_filename":{key},"id":{key}' + "}"


FULL1 = '"mode":"full","timestamp":1,"size":10'
FULL2 = '"mode":"full","timestamp":2,"size":20'
DELTA3 = '"mode":"delta","timestamp":3,"size":30'

scenarios = [
    {
        "name": "xo-removed-incomplete-backup-is-not-listed",
        "note": "XO's cleanVm leaves the entry of a backup it removed (W3-A); a check drops it",
        "cache": body((k(1), xo_add(1, FULL1)), (k(2), xo_add(2, FULL2))),
        "steps": [
            {
                "reconcile": [n(1), "20240101T000000Z.xva", "20240102T000000Z.xva.checksum", "cache.json.gz", "vdis"],
                "expectPlan": {"stale": [n(2)], "missing": []},
            },
            {"apply": {}, "expectUnreadable": []},
        ],
        "expect": {"body": body((k(1), shaped(1, FULL1)))},
    },
    {
        "name": "xo-same-count-different-keys-is-repaired",
        "note": "XO's count check passes a cache with one lost add and one lost remove (W3-C)",
        "cache": body((k(1), xo_add(1, FULL1)), (k(2), xo_add(2, FULL2))),
        "steps": [
            {"reconcile": [n(1), n(3)], "expectPlan": {"stale": [n(2)], "missing": [n(3)]}},
            {"apply": {n(3): "{" + DELTA3 + "}"}, "expectUnreadable": []},
        ],
        "expect": {"body": body((k(1), shaped(1, FULL1)), (k(3), shaped(3, DELTA3)))},
    },
    {
        "name": "xo-every-writer-yields-the-same-shape",
        "note": "XO's regeneration, add and cleanVm shapes all become brcache's one shape (W4)",
        "cache": body(
            (k(1), "{" + FULL1 + f',"_filename":{json.dumps(k(1))},"isImmutable":false,"id":{json.dumps(k(1))}' + "}"),
            (k(2), xo_add(2, FULL2)),
            (k(3), '{"_filename":"elsewhere","id":"wrong",' + DELTA3 + "}"),
        ),
        "steps": [],
        "expect": {"body": body((k(1), shaped(1, FULL1)), (k(2), shaped(2, FULL2)), (k(3), shaped(3, DELTA3)))},
    },
    {
        "name": "legacy-keys-without-leading-slash-load",
        "note": "both key spellings are read; the leading-slash one is written",
        "cache": body((k(1)[1:], xo_add(1, FULL1, k(1)[1:])), (k(2)[1:], xo_add(2, FULL2, k(2)[1:]))),
        "steps": [{"reconcile": [n(1), n(2)], "expectPlan": {"stale": [], "missing": []}}],
        "expect": {"body": body((k(1), shaped(1, FULL1)), (k(2), shaped(2, FULL2)))},
    },
    {
        "name": "add-and-remove-are-idempotent-and-ordered-by-name",
        "cache": None,
        "steps": [
            {"add": k(3)[1:], "metadata": "{ " + DELTA3 + " }"},
            {"add": k(1), "metadata": "{" + FULL1 + "}"},
            {"add": k(1), "metadata": "{" + FULL1 + "}"},
            {"add": k(2), "metadata": '{"mode":"full","timestamp":2,"size":20,"isImmutable":true}'},
            {"remove": [k(3), k(4)]},
            {"remove": [k(3)]},
        ],
        "expect": {"body": body((k(1), shaped(1, FULL1)), (k(2), shaped(2, FULL2, "true")))},
    },
    {
        "name": "keys-outside-the-vm-folder-are-refused",
        "cache": None,
        "steps": [
            {"add": "/xo-vm-backups/vm-2/20240101T000000Z.json", "metadata": "{}", "expectError": "INVALID_KEY"},
            {"add": D + "../vm-2/20240101T000000Z.json", "metadata": "{}", "expectError": "INVALID_KEY"},
            {"add": D + "sub/20240101T000000Z.json", "metadata": "{}", "expectError": "INVALID_KEY"},
            {"add": D + "20240101T000000Z.xva", "metadata": "{}", "expectError": "INVALID_KEY"},
            {"add": k(1), "metadata": "[1]", "expectError": "INVALID_METADATA"},
            {"add": k(1), "metadata": "{" + FULL1 + "}"},
            {"remove": [k(1), "/etc/passwd.json"], "expectError": "INVALID_KEY"},
        ],
        "expect": {"body": body((k(1), shaped(1, FULL1)))},
    },
    {
        "name": "a-cache-holding-a-foreign-key-is-refused",
        "cache": body((k(1), xo_add(1, FULL1)), ("/xo-vm-backups/vm-1/../../etc/x.json", "{}")),
        "expectLoadError": "INVALID_KEY",
    },
    {
        "name": "a-cache-entry-that-is-not-an-object-is-refused",
        "cache": body((k(1), "[]")),
        "expectLoadError": "ENTRY_NOT_AN_OBJECT",
    },
    {
        "name": "rebuild-reports-unreadable-metadata",
        "cache": None,
        "steps": [
            {
                "rebuild": [n(1), n(2), n(3), "cache.json.gz", ".20240104T000000Z.json"],
                "files": {n(1): "{" + FULL1 + "}", n(2): '{"mode":"full",'},
                "expectUnreadable": [n(2), n(3)],
            }
        ],
        "expect": {"body": body((k(1), shaped(1, FULL1)))},
    },
    {
        "name": "summaries-sorted-by-timestamp-and-filtered",
        "cache": body(
            (k(1), xo_add(1, '"mode":"delta","timestamp":300,"size":3,"jobId":"j2","scheduleId":"s1","tags":[],'
                    '"vm":{"uuid":"u","name_label":"web","name_description":"d","tags":["prod"],"power_state":"Running"},'
                    '"vmSnapshot":{"suspend_VDI":"OpaqueRef:NULL"},'
                    '"vdis":{"OpaqueRef:a":{"uuid":"va","name_label":"disk a"},"OpaqueRef:b":{"uuid":"vb","name_label":"disk b"}},'
                    '"vhds":{"OpaqueRef:a":"vdis/j2/va/20240101T000000Z.vhd","OpaqueRef:b":"vdis/j2/vb/20240101T000000Z.alias.vhd"},'
                    '"isVhdDifferencing":{"OpaqueRef:a":true,"OpaqueRef:b":false}')),
            (k(2), xo_add(2, '"mode":"full","timestamp":100,"size":1,"jobId":"j1","scheduleId":"s1",'
                    '"vm":{"uuid":"u","name_label":"web","name_description":"d","tags":[]},'
                    '"vmSnapshot":{"suspend_VDI":"OpaqueRef:mem"},"xva":"./20240102T000000Z.xva"')),
            (k(3), xo_add(3, '"mode":"full","timestamp":200,"size":2,"jobId":"j1","scheduleId":"s2"')),
        ),
        "steps": [
            {
                "summaries": None,
                "expectIds": [k(2), k(3), k(1)],
            },
            {"summaries": {"mode": "delta"}, "expectIds": [k(1)]},
            {"summaries": {"jobId": "j1", "scheduleId": "s2"}, "expectIds": [k(3)]},
            {
                "summaries": {"jobId": "j2"},
                "expectSummaries": [
                    {
                        "id": k(1),
                        "timestamp": 300,
                        "mode": "delta",
                        "size": 3,
                        "jobId": "j2",
                        "scheduleId": "s1",
                        "tags": [],
                        "vm": {"uuid": "u", "name_label": "web", "name_description": "d", "tags": ["prod"]},
                        "disks": [
                            {"id": D + "vdis/j2/va/20240101T000000Z.vhd", "name": "disk a", "uuid": "va"},
                            {"id": D + "vdis/j2/vb/20240101T000000Z.alias.vhd", "name": "disk b", "uuid": "vb"},
                        ],
                        "withMemory": False,
                        "differencingVhds": 1,
                        "dynamicVhds": 1,
                        "isImmutable": False,
                    }
                ],
            },
            {
                "summaries": {"mode": "full", "jobId": "j1", "scheduleId": "s1"},
                "expectSummaries": [
                    {
                        "id": k(2),
                        "timestamp": 100,
                        "mode": "full",
                        "size": 1,
                        "jobId": "j1",
                        "scheduleId": "s1",
                        "tags": None,
                        "vm": {"uuid": "u", "name_label": "web", "name_description": "d", "tags": []},
                        "disks": [],
                        "withMemory": True,
                        "differencingVhds": 0,
                        "dynamicVhds": 0,
                        "isImmutable": False,
                    }
                ],
            },
        ],
    },
]

out = pathlib.Path(__file__).resolve().parent.parent / "tests" / "vectors" / "semantics.json"
out.write_text(json.dumps({"vm": VM, "scenarios": scenarios}, indent=2, ensure_ascii=False) + "\n")
print(f"wrote {len(scenarios)} scenarios to {out}")
