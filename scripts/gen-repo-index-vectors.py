#!/usr/bin/env python3
"""Writes tests/vectors/index.json: repository-index scenarios with their
expected outcomes, run by the Rust, napi and wasm suites alike.

Expectations are spelled out here by hand from the format's rules (README,
"Repository-wide index"; crates/core/src/index/), not computed by brcache:
per VM the entry of the highest cache generation wins, then the greater
fingerprint; a snapshot's `folded` segments are skipped; a compaction takes
the generation after the newest snapshot listed; a rebuild outranks every
snapshot listed. Segments are given as JSON objects: each suite feeds them
both as plain JSON (the first release's segments) and gzip-compressed."""

import hashlib
import json
import pathlib

A = "3e1b9a52-0000-4000-8000-00000000000a"
B = "3e1b9a52-0000-4000-8000-00000000000b"
C = "3e1b9a52-0000-4000-8000-00000000000c"


def summary(vm, day, mode="full", job="job-1"):
    key = f"/xo-vm-backups/{vm}/2024010{day}T000000Z.json"
    return {
        "id": key,
        "timestamp": 1704067200000 + day * 86400000,
        "mode": mode,
        "size": 1000 * day,
        "jobId": job,
        "scheduleId": "schedule-1",
        "tags": [],
        "vm": {"uuid": vm, "name_label": f"vm {vm[-1]}", "name_description": "", "tags": []},
        "disks": [],
        "withMemory": False,
        "differencingVhds": 0,
        "dynamicVhds": 0,
        "isImmutable": False,
    }


def fp(n):
    return f"{n:064x}"


def entry(vm, generation, days, fingerprint=None, modes=None):
    modes = modes or {}
    return {
        "generation": generation,
        "fingerprint": fp(fingerprint if fingerprint is not None else generation),
        "summaries": [summary(vm, d, modes.get(d, "full")) for d in days],
    }


def segment(vm, generation, days, **kw):
    return {"version": 1, "vm": vm, **entry(vm, generation, days, **kw)}


def seg_name(ms, rand):
    return f"{ms:015d}-{rand:016x}.json.gz"


def vm_seg_name(ms, rand, vm):
    """A segment's name that says its VM (an older release's says none)."""
    return f"{ms:015d}-{rand:016x}-{vm}.json.gz"


def snap_name(g):
    return f"snapshot-{g:020d}.json.gz"


def snapshot(generation, folded, vms):
    return {"version": 1, "generation": generation, "folded": sorted(folded), "vms": vms}


def ids(vm, days):
    return [summary(vm, d)["id"] for d in days]


S1, S2, S3, S4, S5 = (seg_name(1000 + i, 0xA0 + i) for i in range(1, 6))

scenarios = []

# Loading: fold rules.
scenarios.append({
    "name": "segments fold by cache generation, in any order; folded ones are skipped",
    "load": {
        "snapshot": snapshot(3, [S1], {A: entry(A, 2, [1, 2])}),
        "segments": [
            [S4, segment(A, 2, [9])],        # older than the one that wins: ignored
            [S1, segment(A, 1, [1])],        # folded into the snapshot: skipped
            [S3, segment(B, 1, [5])],
            [S2, segment(A, 3, [1, 2, 3])],
        ],
    },
    "expect": {
        "view": {A: ids(A, [1, 2, 3]), B: ids(B, [5])},
        "generations": {A: 3, B: 1, C: None},
        "generation": 3,
        "unfolded": 3,
        "unreadable": [],
        # The listing's newest snapshot is the one read: generation 3 -> 4.
        "compaction": {"name": snap_name(4), "generation": 4, "segmentsToDelete": sorted([S1, S2, S3, S4])},
    },
})

scenarios.append({
    "name": "of two entries of one generation, the greater fingerprint wins",
    "load": {
        "snapshot": snapshot(1, [], {}),
        "segments": [
            [S1, segment(A, 4, [1], fingerprint=7)],
            [S2, segment(A, 4, [1, 2], fingerprint=9)],
            [S3, segment(A, 4, [3], fingerprint=8)],
        ],
    },
    "expect": {"view": {A: ids(A, [1, 2])}, "generations": {A: 4}, "unfolded": 3, "unreadable": []},
})

scenarios.append({
    "name": "a VM emptied of restore points stays empty against an older segment, and is left out of the view",
    "load": {
        "snapshot": snapshot(2, [], {A: entry(A, 5, []), B: entry(B, 1, [4])}),
        "segments": [[S1, segment(A, 4, [1, 2])]],
    },
    "expect": {"view": {B: ids(B, [4])}, "generations": {A: 5, B: 1}, "unfolded": 1, "unreadable": []},
})

scenarios.append({
    "name": "segments that do not decode are set aside, never fatal",
    "load": {
        "snapshot": snapshot(1, [], {A: entry(A, 1, [1])}),
        "segments": [
            [S1, "this is no segment"],
            [S2, {"version": 2, "vm": A, **entry(A, 9, [1, 2, 3])}],  # a later format
            [S3, {"vm": B}],                                          # no version, no entry
            [S4, segment(B, 1, [2])],
        ],
    },
    "expect": {"view": {A: ids(A, [1]), B: ids(B, [2])}, "unfolded": 1, "unreadable": [S1, S2, S3]},
})

# What an index file may not carry: a listing hands summaries on as they are,
# so each must have a summary's shape and an id naming a metadata file of its
# own VM folder, once.
bad = dict(segment(B, 7, [1]))
hostile = {
    "an id in another VM's folder": {**bad, "summaries": [summary(A, 1)]},
    "an id outside the backup folder": {**bad, "summaries": [{**summary(B, 1), "id": "/etc/passwd"}]},
    "an id climbing out with ..": {**bad, "summaries": [{**summary(B, 1), "id": f"/xo-vm-backups/{B}/../{A}/20240101T000000Z.json"}]},
    "an id that is not a .json file": {**bad, "summaries": [{**summary(B, 1), "id": f"/xo-vm-backups/{B}/data.vhd"}]},
    "the same file twice": {**bad, "summaries": [summary(B, 1), {**summary(B, 1), "id": f"xo-vm-backups/{B}/20240101T000000Z.json"}]},
    "a VM name with a slash": {**segment(B, 7, []), "vm": f"{B}/.."},
    "a summary without its mode": {**bad, "summaries": [{k: v for k, v in summary(B, 1).items() if k != "mode"}]},
    "a summary whose disks are not a list": {**bad, "summaries": [{**summary(B, 1), "disks": {"id": "x"}}]},
    "a summary that is a string": {**bad, "summaries": ["/xo-vm-backups/x.json"]},
    # As raw text: a lone UTF-16 surrogate escape, which JSON.parse and the
    # cache decoder refuse, must be refused in a plain segment as in a gzip
    # one (the fuzzer found a plain one that was not).
    "a lone surrogate escape": json.dumps(segment(B, 7, [1])).replace('"vm b"', '"\\ud800 vm b"', 1),
}
names = [seg_name(3000 + i, i) for i in range(len(hostile))]
scenarios.append({
    "name": "hostile segments are unreadable: ids outside their VM folder, bad VM names, wrong shapes",
    "load": {
        "snapshot": snapshot(1, [], {A: entry(A, 1, [1])}),
        "segments": [[n, seg] for n, seg in zip(names, hostile.values())],
    },
    "expect": {"view": {A: ids(A, [1])}, "generations": {A: 1, B: None}, "unfolded": 0, "unreadable": names},
})

scenarios.append({
    "name": "a snapshot holding an id outside its VM folder is refused whole",
    "load": {"snapshot": snapshot(1, [], {A: {**entry(A, 1, [1]), "summaries": [summary(B, 1)]}}), "segments": []},
    "expect": {"loadError": "INVALID_KEY"},
})

scenarios.append({
    "name": "without a snapshot, the segments alone; the first compaction is generation 1",
    "load": {"snapshot": None, "segments": [[S1, segment(C, 2, [7])]]},
    "expect": {
        "view": {C: ids(C, [7])},
        "generation": 0,
        "unfolded": 1,
        "unreadable": [],
        "compaction": {"name": snap_name(1), "generation": 1, "segmentsToDelete": [S1]},
    },
})

scenarios.append({
    "name": "a snapshot that does not decode is an error",
    "load": {"snapshotBytes": "not gzip at all", "segments": []},
    "expect": {"loadError": "NOT_GZIP"},
})

scenarios.append({
    "name": "a snapshot of another format is an error",
    "load": {"snapshot": {"version": 2, "generation": 1, "folded": [], "vms": {}}, "segments": []},
    "expect": {"loadError": "INVALID_ARGUMENT"},
})

scenarios.append({
    "name": "a compaction takes the generation after the newest snapshot listed, even one newer than it read",
    "load": {
        "snapshot": snapshot(6, [], {A: entry(A, 1, [1])}),
        "segments": [[S1, segment(A, 2, [1, 2])]],
        "listedGeneration": 9,
    },
    "expect": {
        "view": {A: ids(A, [1, 2])},
        "compaction": {"name": snap_name(10), "generation": 10, "segmentsToDelete": [S1]},
    },
})

scenarios.append({
    "name": "the view keeps what a filter accepts, VMs left without any omitted",
    "load": {
        "snapshot": snapshot(1, [], {
            A: entry(A, 1, [1, 2, 3], modes={2: "delta", 3: "delta"}),
            B: entry(B, 1, [4], modes={4: "delta"}),
            C: entry(C, 1, [5]),
        }),
        "segments": [],
    },
    "filter": {"mode": "full"},
    "expect": {"view": {A: ids(A, [1]), C: ids(C, [5])}},
})

scenarios.append({
    "name": "drift: behind, unknown, gone; a folder without a cache whose entry is empty is fine",
    "load": {
        "snapshot": snapshot(1, [], {
            A: entry(A, 2, [1]),
            B: entry(B, 3, [1]),
            C: entry(C, 1, [1]),
            "d-empty": entry("d-empty", 4, []),
        }),
        "segments": [],
    },
    "caches": {
        A: [2, fp(2)],        # the same generation and fingerprint: in step
        B: [3, fp(99)],       # same generation, other fingerprint (XO rewrote it): behind
        "new-vm": [0, None],  # a folder the index does not know
        "d-empty": None,      # no cache, and the entry has no restore points
    },
    "expect": {"drift": {B: "behind", C: "gone", "new-vm": "unknown"}},
})

# Read plans from listings of the index folder.
scenarios.append({
    "name": "a listing: the newest snapshot, older ones newest first, segments sorted, anything else ignored",
    "listing": [
        snap_name(2), S3, ".snapshot-00000000000000000011.json.gz.tmp-77-ab", snap_name(10),
        "000000000001001-00000000000000a1.json", S1, "notes.txt", snap_name(7), "1-2.json.gz",
        ".lock",
    ],
    "expect": {
        "plan": {
            "snapshot": snap_name(10),
            "segments": sorted([S1, S3, "000000000001001-00000000000000a1.json"]),
            "oldSnapshots": [snap_name(7), snap_name(2)],
            "generation": 10,
            "shouldCompact": False,
        }
    },
})

scenarios.append({
    "name": "an empty listing",
    "listing": [],
    "expect": {"plan": {"snapshot": None, "segments": [], "oldSnapshots": [], "generation": 0, "shouldCompact": False}},
})

many = [seg_name(5000 + i, i) for i in range(65)]
scenarios.append({
    "name": "past 64 segments a writer compacts",
    "listing": many,
    "expect": {"plan": {"snapshot": None, "segments": many, "oldSnapshots": [], "generation": 0, "shouldCompact": True}},
})

scenarios.append({
    "name": "64 segments are not yet enough",
    "listing": many[:64],
    "expect": {"plan": {"snapshot": None, "segments": many[:64], "oldSnapshots": [], "generation": 0, "shouldCompact": False}},
})

# Rebuilds from the VM caches.
scenarios.append({
    "name": "a rebuild outranks every snapshot listed; a later segment still wins, a cut one is deleted",
    "rebuild": {
        "listing": [snap_name(3), snap_name(8), S1, S2, S5],
        "fromCaches": [segment(A, 4, [1]), segment(B, 2, [2, 3])],
        "segments": [
            [S1, segment(A, 5, [1, 4])],  # published after A's cache was read
            [S2, segment(B, 1, [2])],     # older than B's cache
            [S5, "cut short"],
        ],
    },
    "expect": {
        "compaction": {"name": snap_name(9), "generation": 9, "segmentsToDelete": sorted([S1, S2, S5])},
        "view": {A: ids(A, [1, 4]), B: ids(B, [2, 3])},
    },
})

scenarios.append({
    "name": "a rebuild refuses a VM cache segment that does not decode",
    "rebuild": {"listing": [], "fromCaches": ["garbage"], "segments": []},
    "expect": {"rebuildError": "INVALID_JSON"},
})

# Deltas (format 2): what a writer changed, folded over the highest view.
# A delta is in that view when named SKEW_MS or more before it, or, written
# under a lock that excludes, when named no later and of a generation no
# later; every other delta is applied over it, puts first, then every
# removal. An entry made of deltas only, or whose restore points are not
# the set its fingerprint names, is in doubt (listings read its cache).
SKEW_MS = 5 * 60 * 1000


def real_fp(vm, days):
    """A cache's fingerprint: SHA-256 of its metadata file names, sorted, each followed by a NUL."""
    names = sorted({summary(vm, d)["id"].rsplit("/", 1)[1] for d in days})
    return hashlib.sha256(b"".join(n.encode() + b"\0" for n in names)).hexdigest()


def view(vm, generation, days):
    """A view segment of a cache whose fingerprint is true to its restore points."""
    return {**segment(vm, generation, days), "fingerprint": real_fp(vm, days)}


def delta(vm, generation, after, put=(), remove=(), locked=True, fingerprint=None):
    """A delta leaving the cache with the restore points `after` (its fingerprint), unless told otherwise."""
    out = {
        "version": 2,
        "vm": vm,
        "kind": "delta",
        "generation": generation,
        "fingerprint": fingerprint or real_fp(vm, after),
        "put": [summary(vm, d) for d in put],
        "remove": ids(vm, remove),
    }
    if locked:
        out["locked"] = True
    return out


T = 1_700_000_000_000


def at(ms, rand=0xD0):
    return seg_name(ms, rand)


scenarios.append({
    "name": "deltas put and remove over a view; an entry that adds up to its fingerprint is trusted",
    "load": {
        "snapshot": snapshot(1, [], {}),
        "segments": [
            [at(T), view(A, 3, [1, 2])],
            [at(T + 1000), delta(A, 4, [1, 2, 3], put=[3])],
            [at(T + 2000), delta(A, 5, [2, 3], remove=[1])],
        ],
    },
    "expect": {"view": {A: ids(A, [2, 3])}, "generations": {A: 5}, "inDoubt": [], "unfolded": 3, "unreadable": []},
})

scenarios.append({
    "name": "a removal wins over a put named after it (writers without a lock)",
    "load": {
        "snapshot": snapshot(1, [], {}),
        "segments": [
            [at(T), view(A, 2, [1, 2])],
            [at(T + 2000), delta(A, 3, [1, 2], put=[2], locked=False)],  # a late put of 2
            [at(T + 1000), delta(A, 4, [1], remove=[2], locked=False)],
        ],
    },
    "expect": {"view": {A: ids(A, [1])}, "generations": {A: 4}, "inDoubt": [], "unreadable": []},
})

scenarios.append({
    "name": "a delta named SKEW_MS before the view is in it; one a millisecond later is applied",
    "load": {
        "snapshot": snapshot(1, [], {}),
        "segments": [
            [at(T), view(A, 5, [1, 2])],
            # Would add 8: taken as seen by the view.
            [at(T - SKEW_MS, 0xD1), delta(A, 3, [1, 2, 8], put=[8], locked=False)],
            [at(T - SKEW_MS + 1, 0xD2), delta(A, 6, [1, 2, 3], put=[3], locked=False)],
        ],
    },
    "expect": {"view": {A: ids(A, [1, 2, 3])}, "generations": {A: 6}, "inDoubt": [], "unreadable": []},
})

scenarios.append({
    "name": "a locked delta older than the view by both clocks is in it; the same delta without a lock is applied, and doubted",
    "load": {
        "snapshot": snapshot(1, [], {}),
        "segments": [
            [at(T + 10_000, 0xD1), view(A, 5, [2])],
            [at(T + 5_000, 0xD2), delta(A, 4, [1, 2], put=[1])],
            [at(T + 10_000, 0xD3), view(B, 5, [2])],
            [at(T + 5_000, 0xD4), delta(B, 4, [1, 2], put=[1], locked=False)],
        ],
    },
    # B's restore points {1, 2} are not the set {2} its fingerprint (the
    # view's, of the higher generation) names.
    "expect": {"view": {A: ids(A, [2]), B: ids(B, [1, 2])}, "generations": {A: 5, B: 5}, "inDoubt": [B], "unreadable": []},
})

scenarios.append({
    "name": "deltas only, the VM never seen whole: in doubt; a compaction keeps its deltas as segments",
    "load": {
        "snapshot": snapshot(2, [], {A: entry(A, 1, [1])}),
        "segments": [
            [at(T, 0xD1), delta(B, 1, [4], put=[4])],
            [at(T + 1, 0xD2), segment(A, 2, [1, 2])],
        ],
    },
    "expect": {
        "view": {A: ids(A, [1, 2]), B: ids(B, [4])},
        "generations": {A: 2, B: 1},
        "inDoubt": [B],
        "compaction": {"name": snap_name(3), "generation": 3, "segmentsToDelete": [at(T + 1, 0xD2)]},
    },
})

scenarios.append({
    "name": "a delta whose fingerprint names other restore points leaves its VM in doubt; a later view ends it",
    "load": {
        "snapshot": snapshot(1, [], {}),
        "segments": [
            [at(T, 0xD1), view(A, 2, [1])],
            # Says the cache holds {1, 3}: Xen Orchestra wrote between two deltas.
            [at(T + 1000, 0xD2), delta(A, 3, [1, 3], put=[2])],
            [at(T, 0xD3), view(B, 2, [1])],
            [at(T + 1000, 0xD4), delta(B, 3, [1, 3], put=[2])],
            [at(T + 2000, 0xD5), view(B, 4, [1, 2, 3])],
        ],
    },
    "expect": {
        "view": {A: ids(A, [1, 2]), B: ids(B, [1, 2, 3])},
        "generations": {A: 3, B: 4},
        "inDoubt": [A],
        "compaction": {"name": snap_name(2), "generation": 2, "segmentsToDelete": sorted([at(T, 0xD1), at(T, 0xD3), at(T + 1000, 0xD4), at(T + 2000, 0xD5)])},
    },
})

scenarios.append({
    "name": "a delta of format 1, or without its removals, is unreadable",
    "load": {
        "snapshot": snapshot(1, [], {A: entry(A, 1, [1])}),
        "segments": [
            [at(T, 0xD1), {**delta(A, 2, [1, 2], put=[2]), "version": 1}],
            [at(T, 0xD2), {k: v for k, v in delta(A, 2, [1, 2], put=[2]).items() if k != "remove"}],
            [at(T, 0xD3), {**delta(A, 2, [1, 2], put=[2]), "remove": [f"/xo-vm-backups/{B}/20240101T000000Z.json"]}],
        ],
    },
    "expect": {"view": {A: ids(A, [1])}, "inDoubt": [], "unreadable": [at(T, 0xD1), at(T, 0xD2), at(T, 0xD3)]},
})

# Tables and parts (format 3): a row per VM, the entries in parts.
P1 = f"part-{4:020d}-{1000:015d}-{0xb1:016x}.json.gz"
P2 = f"part-{4:020d}-{1000:015d}-{0xb2:016x}.json.gz"


def row(e, part, name, count, modes, last, size):
    return {
        "generation": e["generation"], "fingerprint": e["fingerprint"], "part": part,
        "name": name, "count": count, "modes": modes, "lastBackup": last, "size": size,
    }


def shown(r):
    return {k: r[k] for k in ("name", "count", "modes", "lastBackup", "size")}


EA, EB, EC = entry(A, 3, [1, 2], modes={2: "delta"}), entry(B, 5, [3]), entry(C, 1, [])
DAY = lambda d: 1704067200000 + d * 86400000
RA = row(EA, P1, "vm a", 2, {"delta": 1, "full": 1}, DAY(2), 3000)
RB = row(EB, P1, "vm b", 1, {"full": 1}, DAY(3), 3000)
RC = row(EC, P2, None, 0, {}, None, 0)
TABLE = {"version": 3, "generation": 4, "folded": [S1], "rows": {A: RA, B: RB, C: RC}, "parts": {P1: 2, P2: 1}}
PARTS = [[P1, {"version": 3, "vms": {A: EA, B: EB}}], [P2, {"version": 3, "vms": {C: EC}}]]

scenarios.append({
    "name": "a table's rows stand for the VMs no segment touches; one that does is folded from its part",
    "table": {
        "table": TABLE,
        "parts": PARTS,
        # S1 is folded already; S2 (B's generation 6) waits.
        "segments": [[S1, segment(A, 3, [1, 2], modes={2: "delta"})], [S2, segment(B, 6, [3, 4])]],
    },
    "expect": {
        "rows": {
            A: shown(RA),
            B: {"name": "vm b", "count": 2, "modes": {"full": 2}, "lastBackup": DAY(4), "size": 7000},
            C: shown(RC),
        },
        "view": {A: ids(A, [1, 2]), B: ids(B, [3, 4])},
    },
})

scenarios.append({
    "name": "a table read without the parts of VMs nothing touches keeps their rows",
    "table": {"table": TABLE, "parts": [PARTS[1]], "segments": []},
    "expect": {"rows": {A: shown(RA), B: shown(RB), C: shown(RC)}, "view": {}},
})

scenarios.append({
    "name": "a part without an entry its table puts there is refused",
    "table": {"table": TABLE, "parts": [[P1, {"version": 3, "vms": {A: EA}}]], "segments": []},
    "expect": {"loadError": "INVALID_JSON"},
})

scenarios.append({
    "name": "a part whose entry is not the one its row describes is refused",
    "table": {"table": TABLE, "parts": [[P1, {"version": 3, "vms": {A: entry(A, 9, [1]), B: EB}}]], "segments": []},
    "expect": {"loadError": "INVALID_JSON"},
})

scenarios.append({
    "name": "a table row naming a file that is not one of its parts is refused",
    "table": {"table": {**TABLE, "rows": {**TABLE["rows"], A: {**RA, "part": "../cache.json.gz"}}}, "parts": [], "segments": []},
    "expect": {"loadError": "INVALID_JSON"},
})

scenarios.append({
    "name": "parts are listed apart from segments and snapshots",
    "listing": [snap_name(4), P2, P1, S1, "part-1.json.gz"],
    "expect": {"plan": {"snapshot": snap_name(4), "segments": [S1], "oldSnapshots": [], "generation": 4, "shouldCompact": False, "parts": [P1, P2]}},
})

# Segments named by their VM: a reader of one VM's restore points reads its
# own and those whose name says none. A name that says another VM than the
# segment holds is unreadable for every reader, so that all of them agree.
NA, NB, NU = vm_seg_name(6001, 1, A), vm_seg_name(6002, 2, B), seg_name(6003, 3)
scenarios.append({
    "name": "segments named by their VM fold like the others; one named for another VM is unreadable",
    "load": {
        "snapshot": snapshot(1, [], {A: entry(A, 1, [1])}),
        "segments": [
            [NA, segment(A, 2, [1, 2])],
            [NB, segment(A, 3, [1, 2, 3])],  # says B, holds A
            [NU, segment(B, 1, [4])],
        ],
    },
    "expect": {
        "view": {A: ids(A, [1, 2]), B: ids(B, [4])},
        "generations": {A: 2, B: 1},
        "unfolded": 2,
        "unreadable": [NB],
        "compaction": {"name": snap_name(2), "generation": 2, "segmentsToDelete": sorted([NA, NU])},
    },
})

scenarios.append({
    "name": "a listing takes names that say a VM for segments, and odd ones for nothing",
    "listing": [
        snap_name(3), NA, NU, "000000000001001-00000000000000a1.json",
        vm_seg_name(6004, 4, ".hidden"), f"{6005:015d}-{5:016x}-.json.gz",
        f"{6006:015d}-{6:016x}-{A}.json", f"{6007:015d}-{7:017x}-{A}.json.gz",
    ],
    "expect": {
        "plan": {
            "snapshot": snap_name(3),
            "segments": sorted([NA, NU, "000000000001001-00000000000000a1.json"]),
            "oldSnapshots": [],
            "generation": 3,
            "shouldCompact": False,
        }
    },
})

out = pathlib.Path(__file__).resolve().parent.parent / "tests" / "vectors" / "index.json"
out.write_text(json.dumps({"scenarios": scenarios}, indent=1) + "\n")
print(f"wrote {out} ({len(scenarios)} scenarios)")
