"""Portal pages at a site's size: one database with a 100k-study / 300k-series project and a 20-study project.

    nice .venv/bin/python bench/studies.py [--studies 100000] [--repeat 30] [--explain]
        [--postgres postgres://postgres@127.0.0.1:5432/postgres]

With --postgres a scratch database is created on that server (and dropped at the end). Rows are loaded in
bulk with direct SQL (executemany on SQLite, COPY on PostgreSQL; no files: this measures pages, not
ingest), then the planner's statistics are refreshed as after any bulk load (db.refresh_statistics).
Every page is requested through the real app (ASGI, signed in as an administrator, templates rendered)
and p50/p95 are printed in milliseconds: first for the small project alone in the database (the "empty
database" baseline), then for both projects once the big one is loaded. --explain prints each page's
query plans (EXPLAIN QUERY PLAN / EXPLAIN), flagging a full table scan.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PASSWORD = "bench-password-123"
MODALITIES = ["CR", "MR", "CT", "DX"]
DESCRIPTIONS = ["CHEST PA", "BRAIN MRI", "ABDOMEN CT", "KNEE", "SPINE"]
STATUSES = ["unreviewed", "needs_senior_review", "complete"]


# --- bulk load ------------------------------------------------------------------------------------

def make_rows(project_id: int, archive_id: int, tag: str, n_studies: int, per_study: int, ids: dict,
              instances_per_series: int = 0, seed: int = 1) -> dict[str, list[tuple]]:
    """Rows of one project, with explicit ids starting after `ids` (updated in place)."""
    rnd = random.Random(seed)
    now = dt.datetime.now(dt.timezone.utc)
    out = {"lb_patient": [], "lb_study": [], "lb_series": [], "lb_decision": [], "lb_instance": []}
    for i in range(n_studies):
        ids["patient"] += 1
        ids["study"] += 1
        pid, sid = ids["patient"], ids["study"]
        patient_id = f"{tag}{i:06d}"
        out["lb_patient"].append((pid, f"{archive_id}:{patient_id}", project_id, archive_id, patient_id,
                                  f"Doe^{tag}{i}", "", "", now))
        uid = f"1.2.826.0.1.{project_id}.{i}"
        # Many studies share a date: the walk's ties on equal dates are part of what is measured.
        date = f"20{rnd.randint(10, 25)}{rnd.randint(1, 12):02d}{rnd.randint(1, 28):02d}"
        mods = rnd.sample(MODALITIES, rnd.randint(1, 2))
        out["lb_study"].append((sid, f"{project_id}:{uid}", project_id, pid, uid, date, "101500",
                                rnd.choice(DESCRIPTIONS), "", "", f"A{tag}{i}", "", "\\".join(mods), now, now))
        for k in range(per_study):
            ids["series"] += 1
            seid = ids["series"]
            suid = f"{uid}.{k + 1}"
            status = rnd.choices(STATUSES, weights=[6, 1, 3])[0]
            score = round(rnd.random(), 3) if rnd.random() < 0.6 else None
            out["lb_series"].append((seid, f"{project_id}:{suid}", project_id, sid, suid, k + 1, date, "",
                                     mods[k % len(mods)], "CHEST", "", "", "", "", status, "",
                                     now, now, score, "done" if score is not None else ""))
            if status != "unreviewed":
                ids["decision"] += 1
                code = "UN" if status == "needs_senior_review" else rnd.choice(["U", "UE", "UN"])
                out["lb_decision"].append((ids["decision"], project_id, seid, None, "reviewer", "reviewer", code,
                                           "", json.dumps({"motion": rnd.choice([0, 1])}), "{}", now))
            for j in range(instances_per_series):
                ids["instance"] += 1
                sop = f"{suid}.{j + 1}"
                out["lb_instance"].append((ids["instance"], f"{project_id}:{sop}", project_id, seid, sop,
                                           "1.2.840.10008.5.1.4.1.1.1", j + 1, "1.2.840.10008.1.2.1", 512, 512, 1,
                                           f"bench/{sop}.dcm", 1000, "0" * 32, now))
    return out


COLUMNS = {
    "lb_patient": "id, key, project, archive, patient_id, patient_name, birth_date, sex, created_at",
    "lb_study": "id, key, project, patient, study_instance_uid, study_date, study_time, description, "
                "referring_physician, institution, accession_number, study_id, modalities, created_at, updated_at",
    "lb_series": "id, key, project, study, series_instance_uid, series_number, series_date, series_time, modality, "
                 "body_part, description, manufacturer, model_name, sop_class_uid, review_status, ai_summary, "
                 "last_instance_at, created_at, ai_score, ai_status",
    "lb_decision": "id, project, series, \"user\", username, role, code, note, artifacts, location, created_at",
    "lb_instance": "id, key, project, series, sop_instance_uid, sop_class_uid, instance_number, "
                   "transfer_syntax_uid, rows, columns, frames, file_key, size, md5, created_at",
}


async def next_ids() -> dict:
    from portal.tables import Series

    ids = {}
    for name, table in [("patient", "lb_patient"), ("study", "lb_study"), ("series", "lb_series"),
                        ("decision", "lb_decision"), ("instance", "lb_instance")]:
        ids[name] = (await Series.raw(f"SELECT COALESCE(MAX(id), 0) AS m FROM {table}"))[0]["m"]
    return ids


async def bulk_load(settings, rows: dict[str, list[tuple]]) -> None:
    order = ["lb_patient", "lb_study", "lb_series", "lb_decision", "lb_instance"]
    if settings.database_kind == "postgres":
        import asyncpg

        params = settings.postgres_params()
        # A bulk load may take longer than the portal's statement timeout on a busy machine.
        params["server_settings"] = {**params["server_settings"], "statement_timeout": "0"}
        con = await asyncpg.connect(**params)
        try:
            async with con.transaction():
                for table in order:
                    if rows[table]:
                        cols = [c.strip().strip('"') for c in COLUMNS[table].split(",")]
                        await con.copy_records_to_table(table, records=rows[table], columns=cols)
            for table in order:  # explicit ids: move the sequences past them
                await con.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                  f"(SELECT COALESCE(MAX(id), 1) FROM {table}))")
        finally:
            await con.close()
        return
    import sqlite3

    from portal.db import fold

    con = sqlite3.connect(settings.sqlite_path, timeout=60)
    con.create_function("lower", 1, fold, deterministic=True)  # the search text folds as Lightbox's own writes
    try:
        with con:
            for table in order:
                if rows[table]:
                    marks = ", ".join("?" for _ in rows[table][0])
                    con.executemany(f"INSERT INTO {table} ({COLUMNS[table]}) VALUES ({marks})",
                                    [tuple(v.isoformat() if isinstance(v, dt.datetime) else v for v in r)
                                     for r in rows[table]])
    finally:
        con.close()


# --- measuring ------------------------------------------------------------------------------------

def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


class Recorder:
    """Keeps the SELECTs the engine runs while on, for EXPLAIN."""

    def __init__(self, engine):
        self.engine, self.on, self.queries = engine, False, []
        original = engine.run_querystring

        async def run_querystring(querystring, *a, **kw):
            if self.on:
                q, args = querystring.compile_string(engine_type=engine.engine_type)
                if q.lstrip().upper().startswith(("SELECT", "WITH")):
                    self.queries.append((q, list(args)))
            return await original(querystring, *a, **kw)

        engine.run_querystring = run_querystring

    async def explain(self) -> tuple[list[tuple[str, list[str]]], float]:
        """Each recorded query's plan, and the time the database took for them all (PostgreSQL: the
        Execution Time of EXPLAIN ANALYZE, server-side; SQLite: running the query again in-process)."""
        out, seen, spent = [], set(), 0.0
        for q, args in self.queries:
            if q in seen:
                continue
            seen.add(q)
            if self.engine.engine_type == "postgres":
                pool = await self.engine.open_pool()
                async with pool.acquire() as con:
                    plan = [r[0] for r in await con.fetch("EXPLAIN " + q, *args)]
                    analyzed = [r[0] for r in await con.fetch("EXPLAIN ANALYZE " + q, *args)]
                spent += sum(float(line.split(":")[1].split()[0]) for line in analyzed
                             if line.startswith("Execution Time"))
            else:
                con = await self.engine._acquire()
                try:
                    async with con.execute("EXPLAIN QUERY PLAN " + q, args) as cur:
                        plan = [r["detail"] for r in await cur.fetchall()]
                    t = time.perf_counter()
                    async with con.execute(q, args) as cur:
                        await cur.fetchall()
                    spent += 1000 * (time.perf_counter() - t)
                finally:
                    await self.engine._release(con)
            out.append((" ".join(q.split())[:140], plan))
        self.queries = []
        return out, spent


def full_scans(plan: list[str]) -> list[str]:
    """Plan lines that read a whole table of more than a few pages (not through an index)."""
    import re

    out = []
    for line in plan:
        seq = re.search(r"Seq Scan on (lb_\w+).*rows=(\d+)", line)
        if (seq and int(seq.group(2)) > 1000) or re.match(r"\s*SCAN lb_\w+( AS \w+)?\s*$", line):
            out.append(line.strip())
    return out


async def measure(client, label: str, paths, repeat: int, recorder: Recorder | None, expect=(200,)) -> dict:
    """p50/p95 of GET paths() over `repeat` requests (after two warm-ups)."""
    for _ in range(2):
        r = await client.get(paths())
        assert r.status_code in expect, (label, r.status_code, r.text[:300])
    times, cpu = [], []
    for _ in range(repeat):
        path = paths()
        t, c = time.perf_counter(), time.process_time()
        r = await client.get(path)
        times.append(1000 * (time.perf_counter() - t))
        cpu.append(1000 * (time.process_time() - c))
        assert r.status_code in expect, (label, path, r.status_code)
    plans, sql_ms = [], None
    if recorder is not None:
        recorder.on = True
        await client.get(paths())
        recorder.on = False
        plans, sql_ms = await recorder.explain()
    return {"label": label, "p50": pct(times, 0.5), "p95": pct(times, 0.95), "cpu": pct(cpu, 0.5), "plans": plans,
            "sql": sql_ms}


def page_cases(name: str, studies: list[str], series: list[str], rnd: random.Random, tag: str) -> list:
    pick_study = lambda: rnd.choice(studies)  # noqa: E731
    pick_series = lambda: rnd.choice(series)  # noqa: E731
    p = f"/projects/{name}"
    return [
        ("studies: first page", lambda: p, (200,)),
        ("studies: sorted by patient", lambda: f"{p}?sort=patient&dir=asc", (200,)),
        ("studies: sorted by series", lambda: f"{p}?sort=series", (200,)),
        ("studies: sorted by AI score", lambda: f"{p}?sort=ai&dir=asc", (200,)),
        ("studies: searched (patient id)", lambda: f"{p}?q={tag}{rnd.randint(0, max(1, len(studies) - 1)):06d}", (200,)),
        ("studies: searched (word)", lambda: f"{p}?q=knee", (200,)),
        ("studies: needs senior review", lambda: f"{p}?status=needs_senior_review", (200,)),
        ("studies: page 40", lambda: f"{p}?page=40", (200,)),
        ("study page", lambda: f"{p}/studies/{pick_study()}", (200,)),
        ("series page (+ prev/next)", lambda: f"{p}/series/{pick_series()}", (200,)),
        ("next in my queue", lambda: f"{p}/queue?after={pick_series()}", (303,)),
        ("dashboard", lambda: f"{p}/dashboard", (200,)),
        ("AI page", lambda: f"{p}/ai", (200,)),
        ("QIDO studies (limit 25)", lambda: f"/dicomweb/{name}/studies?limit=25", (200, 204)),
        ("QIDO studies by PatientID", lambda: f"/dicomweb/{name}/studies?PatientID={tag}{rnd.randint(0, max(1, len(studies) - 1)):06d}",
         (200, 204)),
        ("QIDO series of a study", lambda: f"/dicomweb/{name}/studies/{pick_study()}/series", (200, 204)),
    ]


async def run_pages(client, name: str, tag: str, repeat: int, recorder) -> list[dict]:
    from portal.tables import Project, Series, Study

    project = await Project.objects().get(Project.name == name)
    studies = [r["study_instance_uid"] for r in await Study.raw(
        "SELECT study_instance_uid FROM lb_study WHERE project = {} ORDER BY id LIMIT 2000", project.id)]
    series = [r["series_instance_uid"] for r in await Series.raw(
        "SELECT series_instance_uid FROM lb_series WHERE project = {} ORDER BY id LIMIT 3000", project.id)]
    rnd = random.Random(7)
    results = []
    for label, paths, expect in page_cases(name, studies, series, rnd, tag):
        results.append(await measure(client, label, paths, repeat, recorder, expect))
    return results


def print_results(title: str, results: list[dict], explain: bool) -> None:
    print(f"\n{title}")
    print(f"  {'page':34s} {'p50 ms':>8s} {'p95 ms':>8s} {'CPU p50':>8s} {'SQL ms':>8s}")
    for r in results:
        flag = "" if r["p95"] < 50 else "   > 50 ms"
        sql = f"{r['sql']:8.1f}" if r["sql"] is not None else f"{'':8s}"
        print(f"  {r['label']:34s} {r['p50']:8.1f} {r['p95']:8.1f} {r['cpu']:8.1f} {sql}{flag}")
    print("  (CPU: this process, all its threads; SQL: the page's queries once more, timed by the database)")
    if explain:
        for r in results:
            print(f"\n  -- {r['label']}")
            for q, plan in r["plans"]:
                scans = full_scans(plan)
                print(f"     {'FULL SCAN ' if scans else ''}{q}")
                for line in plan:
                    print(f"        {line}")


# --- the run --------------------------------------------------------------------------------------

async def run(settings, args) -> None:
    import httpx

    from portal import db, projects
    from portal.app import create_app
    from portal.auth import accounts
    from portal.tables import Project

    app = create_app(settings)
    await db.migrate()
    await accounts.create("bench-admin", PASSWORD, email="bench@example.org", is_admin=True)
    small = await projects.create("small")
    small_archive = await projects.archive(small, None)
    ids = await next_ids()
    await bulk_load(settings, make_rows(small.id, small_archive.id, "S", args.small, 3, ids, instances_per_series=10))
    await db.refresh_statistics()
    recorder = Recorder(Project._meta.db) if args.explain else None
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 5555))
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        await client.get("/login")
        r = await client.post("/login", data={"username": "bench-admin", "password": PASSWORD,
                                              "_csrf_token": client.cookies.get("lightbox_csrf")})
        assert r.status_code == 303, r.text
        token = (await client.post("/api-token-auth/", json={"username": "bench-admin", "password": PASSWORD})).json()
        client.headers["Authorization"] = f"Token {token['token']}"
        base = await run_pages(client, "small", "S", args.repeat, None)

        big = await projects.create("big")
        big_archive = await projects.archive(big, None)
        t0 = time.perf_counter()
        ids = await next_ids()
        rows = make_rows(big.id, big_archive.id, "B", args.studies, 3, ids, seed=2)
        t1 = time.perf_counter()
        await bulk_load(settings, rows)
        t2 = time.perf_counter()
        await db.refresh_statistics()
        t3 = time.perf_counter()
        print(f"big project: {len(rows['lb_study'])} studies, {len(rows['lb_series'])} series, "
              f"{len(rows['lb_decision'])} decisions: rows made in {t1 - t0:.0f} s, loaded in {t2 - t1:.0f} s, "
              f"statistics refreshed in {t3 - t2:.1f} s")
        del rows
        big_results = await run_pages(client, "big", "B", args.repeat, recorder)
        small_after = await run_pages(client, "small", "S", args.repeat, recorder if args.explain == "all" else None)
    await db.close_pool()
    kind = settings.database_kind
    print_results(f"[{kind}] small project ({args.small} studies) alone in the database", base, False)
    print_results(f"[{kind}] big project ({args.studies} studies, {3 * args.studies} series)", big_results,
                  bool(args.explain))
    print_results(f"[{kind}] small project beside the big one", small_after, args.explain == "all")
    print(f"\n[{kind}] small project: p95 beside the big one / alone")
    for a, b in zip(base, small_after):
        print(f"  {a['label']:34s} {a['p95']:6.1f} -> {b['p95']:6.1f} ms")


def main() -> None:
    import logging

    logging.getLogger("httpx").setLevel(logging.WARNING)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--studies", type=int, default=100_000, help="studies of the big project (3 series each)")
    ap.add_argument("--small", type=int, default=20, help="studies of the small project")
    ap.add_argument("--repeat", type=int, default=30, help="requests per page")
    ap.add_argument("--explain", nargs="?", const="big", choices=["big", "all"],
                    help="print each page's query plans (big project; 'all': the small one too)")
    ap.add_argument("--postgres", help="a PostgreSQL server URL; a scratch database is made on it")
    ap.add_argument("--keep", action="store_true", help="keep the scratch database (PostgreSQL) for a closer look")
    args = ap.parse_args()
    data_dir = tempfile.mkdtemp(prefix="lightbox-bench-")
    os.environ["LIGHTBOX_DATA_DIR"] = data_dir
    os.environ.setdefault("LIGHTBOX_SECRET_KEY", "bench-secret")
    scratch = None
    if args.postgres:
        from urllib.parse import urlparse, urlunparse

        import asyncpg

        scratch = f"lightbox_bench_{uuid.uuid4().hex[:8]}"
        server = urlparse(args.postgres)

        async def admin(sql: str):
            from portal.settings import Settings

            con = await asyncpg.connect(**Settings(Path(data_dir), database_url=args.postgres).postgres_params())
            try:
                await con.execute(sql)
            finally:
                await con.close()

        asyncio.run(admin(f'CREATE DATABASE "{scratch}"'))
        os.environ["LIGHTBOX_DATABASE_URL"] = urlunparse(server._replace(path=f"/{scratch}"))
    os.environ.setdefault("LIGHTBOX_QUEUE_URL", "")
    from portal import settings as settings_mod

    settings = settings_mod.load()
    try:
        asyncio.run(run(settings, args))
    finally:
        if scratch and args.keep:
            print(f"kept the database {scratch}")
        elif scratch:
            asyncio.run(admin(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
