"""Crash test of ``duplicates = "replace"``: SIGKILL under re-sends and corrections.

``archive serve`` (strict durability, ``[store] duplicates = "replace"``) runs as a
child process, as in test_crash.py. Four associations of our own SCU send without
pause, mixing new instances with re-sends of UIDs already sent, each version with
other pixel bytes, and now and then a correction: a Study Instance UID that files
the instance's series elsewhere, or a Patient ID that files its study under
another patient (README, "A replacement ... is a correction"). The server is
killed with SIGKILL at random moments, mid-ingest and sometimes again during the
start-up that recovers, and restarted on the same folder each time.

What was sent is kept in "families" (a few patients, their studies, series and
instances; corrections stay within a family). A family is used by one client at
a time, one C-STORE at a time, so the order of its versions is known: each is
Success, a failure status, or unknown (the connection dropped first: the kill).
After a last clean start and stop:

- each UID's file is its last acknowledged version or one sent after it whose
  outcome is unknown, never an older or a refused one; nothing temporary is left;
  each instance has exactly one file, and the index and the files agree both ways
  (size, SHA-256 of the data set bytes);
- the aggregates (instances per series, series and instances per study and
  patient, SOP classes in study, the totals) equal counts recomputed from the rows,
  and no level is left empty;
- where each series and study is filed is what the README's rules make of the
  versions committed, in the order they were sent: for some choice of which
  unknown versions were committed, replaying them on a model of the tree gives
  the index's instances (digest), series -> study and study -> patient links. An
  instance not sent again keeps its file while its series moves (README), so its
  file need not name the study it is found under; its series' last committed
  version does.

The seed is printed on failure; set ARCHIVE_CRASH_SEED to replay a run's timing.
"""

from __future__ import annotations

import itertools
import os
import random
import signal
import time
from collections import Counter
from pathlib import Path

from tests.interop.conftest import stop
from tests.store.helpers import (
    SUCCESS,
    CrashClients,
    StoreFn,
    assert_index_and_files_agree,
    encode_dataset,
    fixed_port,
    make_dataset,
    readonly_query,
    serve,
    sha256,
    spawn,
    split_part10,
    start_clean_and_stop,
)

ROUNDS = 8
FAMILIES = 12
#: Share of rounds followed by a second kill during the restart (recovery running).
KILL_IN_START_UP = 0.3
CONFIG = '[store]\nduplicates = "replace"\n'


class Sent:
    """One version of an instance as sent, and what became of it."""

    __slots__ = ("data", "digest", "patient", "series", "status", "study", "uid")

    def __init__(self, uid: str, series: str, study: str, patient: str, data: bytes) -> None:
        self.uid = uid
        self.series = series
        self.study = study
        self.patient = patient
        self.data = data
        self.digest = sha256(data)
        #: "unknown" until a response came: then "ok" or the failure status.
        self.status = "unknown"

    def __repr__(self) -> str:
        return (
            f"Sent({self.uid[-6:]} series ..{self.series[-6:]} study ..{self.study[-6:]}"
            f" {self.patient} {self.digest[:8]} {self.status})"
        )


class Family:
    """Patients and what is filed under them, as the senders mean it; the versions
    sent, in order. Used by one client at a time."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.patients = [f"F{n}-{k}" for k in "ABC"]
        self.busy = False
        self.sent: list[Sent] = []
        self.instance_series: dict[str, str] = {}
        self.series_study: dict[str, str] = {}
        self.study_patient: dict[str, str] = {}

    def next(self, rng: random.Random, syntax: str) -> Sent:
        """The next version to send: a new instance, a re-send, or a correction."""
        r = rng.random()
        if not self.instance_series or r < 0.35:
            if not self.series_study or rng.random() < 0.3:
                series = _uid(rng)
                if not self.study_patient or rng.random() < 0.4:
                    study = _uid(rng)
                    self.study_patient[study] = rng.choice(self.patients)
                else:
                    study = rng.choice(sorted(self.study_patient))
                self.series_study[series] = study
            else:
                series = rng.choice(sorted(self.series_study))
            uid = _uid(rng)
            self.instance_series[uid] = series
        else:
            uid = rng.choice(sorted(self.instance_series))
            series = self.instance_series[uid]
            if r > 0.85 and rng.random() < 0.5:  # its series belongs to another study
                was = self.series_study[series]
                others = sorted(s for s in self.study_patient if s != was)
                if others and rng.random() < 0.6:
                    study = rng.choice(others)
                else:
                    study = _uid(rng)
                    self.study_patient[study] = (
                        self.study_patient[was] if rng.random() < 0.7 else rng.choice(self.patients)
                    )
                self.series_study[series] = study
            elif r > 0.85:  # its study belongs to another patient
                study = self.series_study[series]
                now = self.study_patient[study]
                self.study_patient[study] = rng.choice([p for p in self.patients if p != now])
        study = self.series_study[series]
        ds = make_dataset(
            sop_instance_uid=uid,
            series_uid=series,
            study_uid=study,
            patient_id=self.study_patient[study],
            patient_name=f"Family^{self.n}",
            pixel_bytes=rng.randint(2_000, 90_000),
            seed=rng.getrandbits(32),
        )
        sent = Sent(uid, series, study, self.study_patient[study], encode_dataset(ds, syntax))
        self.sent.append(sent)
        return sent


def _uid(rng: random.Random) -> str:
    return f"2.25.{rng.getrandbits(120)}"


class Ingest(CrashClients):
    """Four SCU associations storing versions of the families' instances until told
    to stop, reconnecting whenever the server is gone."""

    def __init__(self, port: int, seed: int) -> None:
        super().__init__(port, seed)
        self.families = [Family(n) for n in range(FAMILIES)]
        self._acknowledged = 0

    def count(self) -> int:
        with self._lock:
            return self._acknowledged

    async def store_one(self, rng: random.Random, syntax: str, store: StoreFn) -> None:
        # One loop, one thread: no await between the pick and busy.
        family = rng.choice([f for f in self.families if not f.busy])
        family.busy = True
        try:
            sent = family.next(rng, syntax)
            status = await store(sent.uid, sent.data)
        finally:
            family.busy = False
        if status == SUCCESS:
            sent.status = "ok"
            with self._lock:
                self._acknowledged += 1
        else:
            sent.status = f"{status:#06x}"


# ---- the model of where things are filed ----------------------------------------------

#: uid -> digest; series -> study; study -> patient.
Tree = tuple[dict[str, str], dict[str, str], dict[str, str]]


def replay(sent: list[Sent], committed: frozenset[int]) -> Tree:
    """The tree the README's rules make of the acknowledged versions and the unknown
    ones at ``committed`` (positions in ``sent``), in the order they were sent."""
    held: dict[str, Sent] = {}
    series: dict[str, str] = {}
    study: dict[str, str] = {}

    def prune(study_uid: str) -> None:
        if study_uid in study and study_uid not in series.values():
            del study[study_uid]

    for position, version in enumerate(sent):
        if not (version.status == "ok" or (version.status == "unknown" and position in committed)):
            continue
        if version.uid not in held:
            # A new instance is filed where its series (or study) already is.
            if version.series not in series:
                study.setdefault(version.study, version.patient)
                series[version.series] = version.study
            held[version.uid] = version
            continue
        # A replacement: the old row goes (and what it leaves empty), then its series
        # moves to the study it names, that study to the patient it names.
        del held[version.uid]
        if not any(v.series == version.series for v in held.values()):
            prune(series.pop(version.series))
        study.setdefault(version.study, version.patient)
        left = series.get(version.series)
        series[version.series] = version.study
        study[version.study] = version.patient
        held[version.uid] = version
        if left is not None:
            prune(left)
    return {uid: v.digest for uid, v in held.items()}, series, study


def explain(family: Family, found: Tree) -> str | None:
    """None if some choice of committed unknown versions replays to ``found``; else
    what differs from the replay with every unknown version committed, and with none."""
    unknown = [i for i, v in enumerate(family.sent) if v.status == "unknown"]
    if len(unknown) <= 14:
        for size in range(len(unknown) + 1):
            for chosen in itertools.combinations(unknown, size):
                if replay(family.sent, frozenset(chosen)) == found:
                    return None
    lines = [f"family {family.n}: {len(family.sent)} versions, unknown at {unknown}"]
    for label, chosen in (("all unknown committed", tuple(unknown)), ("none", ())):
        expected = replay(family.sent, frozenset(chosen))
        for name, want, got in zip(
            ("instances", "series", "studies"), expected, found, strict=True
        ):
            for key in sorted(set(want) | set(got)):
                if want.get(key) != got.get(key):
                    lines.append(
                        f"  [{label}] {name} {key}: model {want.get(key)} index {got.get(key)}"
                    )
    lines += [f"  {i}: {v!r}" for i, v in enumerate(family.sent)]
    return "\n".join(lines)


# ---- reading the index ----------------------------------------------------------------------


def aggregate_problems(root: Path) -> list[str]:
    """Each stored count that differs from the one recomputed from the rows below it,
    each link that disagrees, each level left empty."""
    problems: list[str] = []
    checks = {
        "series.number_of_instances": """
            SELECT se.series_instance_uid, se.number_of_instances,
                   (SELECT count(*) FROM instance i WHERE i.series_pk = se.pk) FROM series se""",
        "study.number_of_series": """
            SELECT st.study_instance_uid, st.number_of_series,
                   (SELECT count(*) FROM series se WHERE se.study_pk = st.pk) FROM study st""",
        "study.number_of_instances": """
            SELECT st.study_instance_uid, st.number_of_instances,
                   (SELECT count(*) FROM instance i JOIN series se ON se.pk = i.series_pk
                    WHERE se.study_pk = st.pk) FROM study st""",
        "study.instance rows": """
            SELECT st.study_instance_uid, st.number_of_instances,
                   (SELECT count(*) FROM instance i WHERE i.study_pk = st.pk) FROM study st""",
        "patient.number_of_studies": """
            SELECT p.patient_id, p.number_of_studies,
                   (SELECT count(*) FROM study st WHERE st.patient_pk = p.pk) FROM patient p""",
        "patient.number_of_series": """
            SELECT p.patient_id, p.number_of_series,
                   (SELECT count(*) FROM series se JOIN study st ON st.pk = se.study_pk
                    WHERE st.patient_pk = p.pk) FROM patient p""",
        "patient.number_of_instances": """
            SELECT p.patient_id, p.number_of_instances,
                   (SELECT count(*) FROM instance i JOIN series se ON se.pk = i.series_pk
                    JOIN study st ON st.pk = se.study_pk WHERE st.patient_pk = p.pk)
            FROM patient p""",
        "study_sop_class.instances": """
            SELECT st.study_instance_uid || ' ' || c.sop_class_uid, c.instances,
                   (SELECT count(*) FROM instance i WHERE i.study_pk = st.pk
                    AND i.sop_class_uid = c.sop_class_uid)
            FROM study_sop_class c JOIN study st ON st.pk = c.study_pk""",
        "study.sop_classes_in_study": """
            SELECT st.study_instance_uid, st.sop_classes_in_study,
                   coalesce((SELECT group_concat(u, '\\') FROM (SELECT DISTINCT i.sop_class_uid
                   AS u FROM instance i WHERE i.study_pk = st.pk ORDER BY u)), '') FROM study st""",
        "totals": """
            SELECT 'totals', t.instances || ' ' || t.bytes,
                   (SELECT count(*) || ' ' || coalesce(sum(size), 0) FROM instance)
            FROM totals t""",
    }
    for name, sql in checks.items():
        for key, stored, counted in readonly_query(root, sql):
            if stored != counted:
                problems.append(f"{name} of {key}: {stored} stored, {counted} counted")
    for key, *_ in readonly_query(
        root,
        "SELECT i.sop_instance_uid FROM instance i JOIN series se ON se.pk = i.series_pk"
        " WHERE i.study_pk <> se.study_pk",
    ):
        problems.append(f"instance {key}: its study_pk is not its series'")
    for level, sql in {
        "series": "SELECT series_instance_uid FROM series se WHERE NOT EXISTS"
        " (SELECT 1 FROM instance i WHERE i.series_pk = se.pk)",
        "study": "SELECT study_instance_uid FROM study st WHERE NOT EXISTS"
        " (SELECT 1 FROM series se WHERE se.study_pk = st.pk)",
        "patient": "SELECT patient_id FROM patient p WHERE NOT EXISTS"
        " (SELECT 1 FROM study st WHERE st.patient_pk = p.pk)",
    }.items():
        problems += [f"empty {level} {key}" for key, *_ in readonly_query(root, sql)]
    problems += [
        f"unflushed journal names {uid}"
        for uid, *_ in readonly_query(root, "SELECT * FROM unflushed")
    ]
    return problems


def index_tree(root: Path) -> tuple[Tree, dict[str, tuple[str, int, str]]]:
    """The index as a :data:`Tree`, and its instance rows: uid -> (path, size, digest)."""
    instances = readonly_query(root, "SELECT sop_instance_uid, path, size, digest FROM instance")
    series = readonly_query(
        root,
        "SELECT se.series_instance_uid, st.study_instance_uid FROM series se"
        " JOIN study st ON st.pk = se.study_pk",
    )
    studies = readonly_query(
        root,
        "SELECT st.study_instance_uid, p.patient_id FROM study st"
        " JOIN patient p ON p.pk = st.patient_pk",
    )
    rows = {str(u): (str(p), int(s), str(d)) for u, p, s, d in instances}  # type: ignore[call-overload]
    tree = (
        {uid: digest for uid, (_, _, digest) in rows.items()},
        {str(a): str(b) for a, b in series},
        {str(a): str(b) for a, b in studies},
    )
    return tree, rows


def split_by_family(families: list[Family], tree: Tree) -> tuple[list[Tree], list[str]]:
    """The index's tree cut into the families' parts; what belongs to none."""
    owner: list[dict[str, int]] = [{}, {}, {}]
    for family in families:
        for version in family.sent:
            owner[0][version.uid] = family.n
            owner[1][version.series] = family.n
            owner[2][version.study] = family.n
    parts: list[Tree] = [({}, {}, {}) for _ in families]
    strays: list[str] = []
    for level, (mapping, owners) in enumerate(zip(tree, owner, strict=True)):
        for key, value in mapping.items():
            if key not in owners:
                strays.append(f"{key} -> {value}")
            else:
                parts[owners[key]][level][key] = value
    return parts, strays


# ---- the server ---------------------------------------------------------------------------


def kill_during_start_up(root: Path, port: int, log: Path, config: Path, delay: float) -> None:
    """Start ``archive serve`` and SIGKILL it after ``delay`` s, listening or not
    (the recovery of the last crash may be running)."""
    proc = spawn(root, port, log, config=config)
    try:
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        stop(proc)


def test_sigkill_under_replacements_keeps_the_last_acknowledged(tmp_path: Path) -> None:
    seed = int(os.environ.get("ARCHIVE_CRASH_SEED", time.time_ns() % 1_000_000))
    rng = random.Random(seed)
    log = tmp_path / "serve.log"
    why = f"(ARCHIVE_CRASH_SEED={seed}, server log {log})"
    root = tmp_path / "data"
    config = tmp_path / "archive.toml"
    config.write_text(CONFIG)
    port = fixed_port()
    ingest = Ingest(port, seed)
    per_round: list[int] = []
    proc = serve(root, port, log, config=config)
    ingest.start()
    try:
        for _round in range(ROUNDS):
            per_round.append(ingest.kill_mid_ingest(proc, rng.uniform(0.2, 1.8)))
            if rng.random() < KILL_IN_START_UP:
                kill_during_start_up(root, port, log, config, rng.uniform(0.05, 0.8))
            proc = serve(root, port, log, config=config)
    finally:
        ingest.stop()
        stop(proc)

    families = ingest.families
    sent = [v for family in families for v in family.sent]
    assert all(n > 0 for n in per_round), f"a round acknowledged nothing: {per_round} {why}"
    failures = Counter(v.status for v in sent if v.status not in ("ok", "unknown"))
    assert failures == {}, f"failure statuses: {dict(failures)} {why}"
    replaced = Counter(v.uid for v in sent if v.status == "ok")
    assert any(n > 1 for n in replaced.values()), f"no UID acknowledged twice {why}"
    statuses = Counter(v.status for v in sent)
    print(  # shown with -s, and on failure
        f"seed {seed}: {len(sent)} versions of {len(replaced)} UIDs, {dict(statuses)};"
        f" acknowledged per round {per_round}; UIDs acknowledged more than once:"
        f" {sum(n > 1 for n in replaced.values())}"
    )

    # The last clean start: recovery has run; nothing temporary is visible.
    start_clean_and_stop(root, port, log, why, config)

    tree, rows = index_tree(root)

    # Each UID: the last acknowledged version, or an unknown one sent after it.
    wrong: list[str] = []
    by_uid: dict[str, list[Sent]] = {}
    for version in sent:
        by_uid.setdefault(version.uid, []).append(version)
    for uid, versions in by_uid.items():
        acked = [i for i, v in enumerate(versions) if v.status == "ok"]
        start = acked[-1] if acked else 0
        allowed = {
            v.digest
            for i, v in enumerate(versions)
            if i >= start and (v.status == "unknown" or (acked and i == start))
        }
        row = rows.get(uid)
        if row is None:
            if acked:
                wrong.append(f"{uid}: acknowledged ({len(acked)}x), not indexed")
            continue
        path = root / row[0]
        if not path.exists():
            wrong.append(f"{uid}: indexed at {row[0]}, no file")
            continue
        blob = path.read_bytes()
        meta, offset = split_part10(blob)
        assert meta[0x0003][1].rstrip(b"\0").decode() == uid
        digest = sha256(blob[offset:])
        if digest not in allowed:
            which = [f"{i}:{v.status}" for i, v in enumerate(versions) if v.digest == digest]
            wrong.append(
                f"{uid}: the file {row[0]} is version {which or 'never sent'} of"
                f" {[v.status for v in versions]}, not the last acknowledged or a later one"
            )
    assert wrong == [], "\n".join([*wrong, why])

    # Index and files agree both ways: one file per instance, its size and digest.
    assert_index_and_files_agree(root, rows, why)

    problems = aggregate_problems(root)
    assert problems == [], "\n".join([*problems, why])

    # Where each series and study is filed: what the versions committed make of it.
    parts, strays = split_by_family(families, tree)
    assert strays == [], f"index entries no family sent: {strays} {why}"
    unexplained = [
        text for f, part in zip(families, parts, strict=True) if (text := explain(f, part))
    ]
    assert unexplained == [], "\n".join([*unexplained, why])
