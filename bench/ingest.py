"""Ingest throughput and memory: N re-stamped CT instances (512×512) sent by K parallel HTTP clients.

    nice .venv/bin/python bench/ingest.py --orthanc      # Lightbox and Orthanc side by side, in one run:
        # per-instance HTTP uploads, STOW-RS (50 per request), one storescu association, WADO-RS
        # metadata and retrieval (16 clients); add --postgres URL for the same on PostgreSQL
    .venv/bin/python bench/ingest.py                     # starts its own Lightbox (SQLite) and measures it
    .venv/bin/python bench/ingest.py -n 1000 -k 4
    .venv/bin/python bench/ingest.py --big-gb 2          # one 2 GB multipart upload; server peak RSS
    .venv/bin/python bench/ingest.py --url http://127.0.0.1:8042/instances --raw   # e.g. Orthanc, same files

Prints instances/s, MB/s and the server's peak RSS (VmHWM) when the server is local. Targets to
measure (not asserted): ≥ 1.2× Orthanc's instances/s for 1,000 CT instances with 4 clients on
SQLite; a 2 GB upload with server peak RSS < 300 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from portal.dicom import samples  # noqa: E402

ADMIN_PASSWORD = "bench-admin-password"


def make_files(n: int, dest: Path, *, one_per_study: bool = False) -> list[Path]:
    """`n` re-stamped CT instances: series of 100, or (`one_per_study`) each its own patient's study, as a
    CR/DX site sends them."""
    try:
        src = samples.sample_path("693_UNCR.dcm")  # CT 512×512, pydicom-data
    except FileNotFoundError:
        src = samples.sample_path("CT_small.dcm")
    if one_per_study:
        return [samples.restamp(src, dest / f"{i}.dcm", patient_id=f"BENCH-{uuid.uuid4().hex[:12]}")
                for i in range(n)]
    files, per_series = [], 100
    for start in range(0, n, per_series):
        files += samples.make_series(src, dest / f"s{start}", min(per_series, n - start))
    return files


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_lightbox(data_dir: Path, workers: int = 0, settings: dict | None = None, *, database_url: str = "",
                   dicom_port: int | None = None, processes: int = 1) -> tuple[subprocess.Popen, str]:
    """A Lightbox on a free port with project 'bench' (its `settings` changed as given)."""
    env = {**os.environ, "LIGHTBOX_DATA_DIR": str(data_dir), "LIGHTBOX_ADMIN_PASSWORD": ADMIN_PASSWORD}
    if database_url:
        env["LIGHTBOX_DATABASE_URL"] = database_url
    port = free_port()
    lb = [sys.executable, "-m", "portal.cli"]
    subprocess.run([*lb, "migrate"], env=env, check=True, capture_output=True)
    subprocess.run([*lb, "project", "create", "bench"], env=env, check=True, capture_output=True)
    if settings:
        code = ("import json, sys; from portal import cli, projects; from portal.tables import Project; cli._setup()\n"
                "async def go():\n    p = await Project.objects().get(Project.name == 'bench')\n"
                "    await projects.update_settings(p, json.loads(sys.argv[1]))\ncli._run(go())")
        subprocess.run([sys.executable, "-c", code, json.dumps(settings)], env=env, check=True, capture_output=True)
    extra = (["--dicom-port", str(dicom_port)] if dicom_port else []) + ["--processes", str(processes)]
    proc = subprocess.Popen([*lb, "serve", "--port", str(port), "--workers", str(workers), *extra], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit("Lightbox did not start")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _tree(pid: int) -> list[int]:
    """`pid` and every process under it (`serve --processes N` forks)."""
    parents = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                parents[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += [c for c, ppid in parents.items() if ppid == p]
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU of process `pid` and every process under it."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for p in _tree(pid):
        try:
            f = (Path(f"/proc/{p}/stat")).read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(f[11]) + int(f[12])) / tick  # utime + stime
    return total


def _threads(pid: int, name: str):
    """((process, thread id), text of the thread's /proc file `name`) for every thread of `pid` and the
    processes under it; threads gone meanwhile are skipped."""
    for p in _tree(pid):
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                yield (p, task.name), (task / name).read_text()
            except OSError:
                continue


def context_switches(pid: int) -> int:
    """Context switches (voluntary and not) of every thread of `pid` and the processes under it: how often the
    server's threads handed the CPU over, each a wake-up (a lock, the GIL, I/O) on the request's path."""
    return sum(int(line.split()[1]) for _, status in _threads(pid, "status") for line in status.splitlines()
               if line.startswith(("voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:")))


def thread_waits(pid: int) -> dict[tuple[int, str], int]:
    """Nanoseconds each thread of `pid` (and the processes under it) has spent runnable but waiting for a CPU
    (schedstat's second field): time on the request's path that is neither work nor I/O."""
    return {key: int(stat.split()[1]) for key, stat in _threads(pid, "schedstat")}


def with_cpu(pid: int, n: int, timed) -> tuple[float, float, float, float, float, float]:
    """(instances/s, server CPU ms per instance, this client's CPU ms per instance, server cores busy, server
    context switches per instance, server run-queue wait ms per instance) of `timed()` (which returns its
    seconds): where the two cores go, the server's share and the client's, how much of the machine the server
    kept busy, and how long its threads stood ready with no free core (threads started meanwhile count whole)."""
    import resource

    def mine() -> float:
        ru = resource.getrusage(resource.RUSAGE_SELF)
        return ru.ru_utime + ru.ru_stime

    s0, c0, x0, w0 = cpu_seconds(pid), mine(), context_switches(pid), thread_waits(pid)
    dt = timed()
    server = cpu_seconds(pid) - s0
    waited = sum(ns - w0.get(key, 0) for key, ns in thread_waits(pid).items()) / 1e6
    return (n / dt, server * 1000 / n, (mine() - c0) * 1000 / n, server / dt, (context_switches(pid) - x0) / n,
            waited / n)


def related(paths: list[Path]):
    """A streamed multipart/related body (files are read in chunks, never all in memory)."""
    boundary = uuid.uuid4().hex

    def body():
        for p in paths:
            yield f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
            with open(p, "rb") as f:
                while chunk := f.read(1 << 20):
                    yield chunk
            yield b"\r\n"
        yield f"--{boundary}--\r\n".encode()

    return body(), f'multipart/related; type="application/dicom"; boundary={boundary}'


def cached(files: list[Path], keep: bool) -> list[Path]:
    """`files` read into the page cache (`keep`), as files just made are, or dropped from it: the run's files stay
    on disk to the end (see side_by_side) but only the next test's are in memory, so the servers' own files are
    not pushed out of the cache by test files (16 GB of them with PostgreSQL)."""
    for f in files:
        fd = os.open(f, os.O_RDONLY)
        try:
            if keep:
                while os.read(fd, 1 << 20):
                    pass
            else:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    return files


def settle() -> None:
    """Write back what is still dirty (the test files just made, the last server's index and folders) before the
    clock starts, so no server's fsyncs wait behind writeback another left (Orthanc's first test ran at ~0.6x)."""
    os.sync()


def send_all(files: list[Path], url: str, k: int, raw: bool, headers: dict) -> float:
    local = threading.local()

    def one(path: Path) -> None:
        client = getattr(local, "client", None) or httpx.Client(timeout=120)
        local.client = client
        if raw:
            r = client.post(url, content=path.read_bytes(), headers={**headers, "Content-Type": "application/dicom"})
        else:
            body, ctype = related([path])
            r = client.post(url, content=body, headers={**headers, "Content-Type": ctype})
        if r.status_code >= 300:
            raise RuntimeError(f"{r.status_code}: {r.text[:200]}")

    settle()
    t0 = time.perf_counter()
    with ThreadPoolExecutor(k) as pool:
        list(pool.map(one, files))
    return time.perf_counter() - t0


ORTHANC_HTTP, ORTHANC_DICOM = 8142, 4342  # never Orthanc's default ports: others may run one


def start_orthanc(root: Path) -> subprocess.Popen:
    """Debian's Orthanc with the DICOMweb plugin, its own config and storage in `root`."""
    plugin = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
    conf = {"Name": "bench", "StorageDirectory": str(root / "storage"), "IndexDirectory": str(root / "index"),
            "HttpPort": ORTHANC_HTTP, "DicomPort": ORTHANC_DICOM, "DicomAet": "ORTHANC", "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False, "DicomCheckCalledAet": False, "Plugins": [plugin],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"}, "HttpThreadsCount": 50, "ConcurrentJobs": 2,
            "KeepAlive": True, "KeepAliveTimeout": 60}
    root.mkdir(parents=True, exist_ok=True)
    (root / "orthanc.json").write_text(json.dumps(conf))
    # TCP_NODELAY=1: Orthanc's DICOM sockets (DCMTK's) leave Nagle's algorithm on without it, and each C-STORE
    # answer then waited for a delayed ACK: 21 instances/s for one storescu association, 236 with it.
    proc = subprocess.Popen(["Orthanc", str(root / "orthanc.json")], stdout=subprocess.DEVNULL,
                            stderr=open(root / "orthanc.log", "wb"), env={**os.environ, "TCP_NODELAY": "1"})
    for _ in range(300):
        try:
            if httpx.get(f"http://127.0.0.1:{ORTHANC_HTTP}/system", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit("Orthanc did not start: see " + str(root / "orthanc.log"))


def form_body(path: Path) -> tuple[bytes, str]:
    """The multipart/form-data body of one file in field 'file', built in one piece as the raw test's body is
    (httpx's `files=` encoder costs this client 0.3-0.5 ms more per instance: CPU the two servers share)."""
    boundary = uuid.uuid4().hex
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{path.name}"\r\n'
            "Content-Type: application/dicom\r\n\r\n").encode()
    return b"".join([head, path.read_bytes(), f"\r\n--{boundary}--\r\n".encode()]), \
        f"multipart/form-data; boundary={boundary}"


def form_upload(files: list[Path], url: str, k: int, headers: dict) -> float:
    """One CAD4TB-style upload per instance (multipart/form-data field 'file')."""
    local = threading.local()

    def one(path: Path) -> None:
        client = getattr(local, "client", None) or httpx.Client(timeout=120)
        local.client = client
        body, ctype = form_body(path)
        r = client.post(url, content=body, headers={**headers, "Content-Type": ctype})
        if r.status_code >= 300:
            raise RuntimeError(f"{r.status_code}: {r.text[:200]}")

    settle()
    t0 = time.perf_counter()
    with ThreadPoolExecutor(k) as pool:
        list(pool.map(one, files))
    return time.perf_counter() - t0


def stow(files: list[Path], url: str, k: int, per: int, headers: dict) -> float:
    groups = [files[i:i + per] for i in range(0, len(files), per)]

    def one(group: list[Path]) -> None:
        body, ctype = related(group)
        r = httpx.post(url, content=b"".join(body), headers={**headers, "Content-Type": ctype}, timeout=600)
        if r.status_code >= 300:
            raise RuntimeError(f"{r.status_code}: {r.text[:200]}")

    settle()
    t0 = time.perf_counter()
    with ThreadPoolExecutor(k) as pool:
        list(pool.map(one, groups))
    return time.perf_counter() - t0


def storescu(files: list[Path], port: int, aet: str) -> float:
    """One association sending every file (dcmtk; TCP_NODELAY on)."""
    settle()
    t0 = time.perf_counter()
    subprocess.run(["storescu", "-aec", aet, "-aet", "BENCHSCU", "127.0.0.1", str(port), *map(str, files)],
                   check=True, capture_output=True, env={**os.environ, "TCP_NODELAY": "1"})
    return time.perf_counter() - t0


def timed_gets(urls: list[str], k: int, headers: dict) -> float:
    local = threading.local()

    def one(url: str) -> None:
        client = getattr(local, "client", None) or httpx.Client(timeout=120)
        local.client = client
        try:
            r = client.get(url, headers=headers)
        except httpx.RemoteProtocolError:  # a kept-alive connection the server had closed: once more
            r = client.get(url, headers=headers)
        if r.status_code != 200:
            raise RuntimeError(f"{url}: {r.status_code}: {r.text[:200]}")

    settle()
    t0 = time.perf_counter()
    with ThreadPoolExecutor(k) as pool:
        list(pool.map(one, urls))
    return time.perf_counter() - t0


def token_of(base: str) -> dict:
    r = httpx.post(base + "/api-token-auth/", json={"username": "admin", "password": ADMIN_PASSWORD}, timeout=30)
    r.raise_for_status()
    return {"Authorization": f"Token {r.json()['token']}"}


def side_by_side(args, tmp: Path) -> None:
    """Lightbox (SQLite, and PostgreSQL when given) and Orthanc on the same files, in one run."""
    import pydicom

    sets = {"http": make_files(args.n, tmp / "http", one_per_study=args.one_per_study),
            "stow": make_files(args.stow_n, tmp / "stow"), "dimse": make_files(args.dimse_n, tmp / "dimse")}
    backends = [(f"{db}{'' if n == 1 else f' x{n}'}", url, n)
                for db, url in [("sqlite", "")] + ([("postgres", args.postgres)] if args.postgres else [])
                for n in args.processes]
    # Every round's files are made now and none is removed before the end. This VM's ext4 has no journal,
    # and there an inode freed in the last ~30 s is searched past at each new file: removing a round's
    # 1,000 files made the next round's server slower (Lightbox ~15%) or faster (Orthanc ~15%), and each
    # Lightbox round came right after the removal of its paired Orthanc round's files.
    for name, _, n_proc in backends:
        tag = name.replace(" ", "")
        sets["warm", name] = make_files(args.k * n_proc * 4, tmp / f"warm-{tag}")
        for r in range(args.rounds):
            sets["http-orthanc", name, r] = make_files(args.n, tmp / f"http-orthanc-{tag}-{r}",
                                                       one_per_study=args.one_per_study)
            sets["http", name, r] = sets["http"] if r == 0 else make_files(
                args.n, tmp / f"http-{tag}-{r}", one_per_study=args.one_per_study)
        sets["stow-orthanc", name] = make_files(args.stow_n, tmp / f"stow-orthanc-{tag}")
        sets["dimse-orthanc", name] = make_files(args.dimse_n, tmp / f"dimse-orthanc-{tag}")
    for key, files in sets.items():
        if isinstance(key, tuple) and files is not sets["http"]:  # the later tests': read in again before each
            cached(files, keep=False)
    shown = sets["stow" if args.one_per_study else "http"]  # the series WADO-RS is asked for
    one_series = [f for f in shown if f.parent == shown[0].parent][:100]
    ds = pydicom.dcmread(one_series[0], stop_before_pixels=True)
    study, series = ds.StudyInstanceUID, ds.SeriesInstanceUID
    sops = [pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in one_series]
    orthanc = start_orthanc(tmp / "orthanc")
    o = f"http://127.0.0.1:{ORTHANC_HTTP}"
    figures: dict = {}
    try:
        _side_by_side(args, tmp, sets, backends, orthanc, o, study, series, sops, figures)
    finally:
        orthanc.terminate()
        orthanc.wait(timeout=60)


def _orthanc_http(args, files: list[Path], orthanc, o: str) -> tuple:
    """One round of Orthanc's per-instance HTTP test on a set of files it has not seen."""
    return with_cpu(orthanc.pid, len(files), lambda: send_all(files, o + "/instances", args.k, True, {}))


def _orthanc_stow(args, files: list[Path], o: str) -> float:
    """One round of Orthanc's STOW-RS test on a set of files it has not seen: instances/s."""
    return len(files) / stow(files, o + "/dicom-web/studies", args.k, args.stow_per, {})


def _warm_up(files: list[Path], base: str, hdr: dict) -> None:
    """A few uploads (other files) before the timed test: a fresh server's first requests load code and fill
    caches, in each of its processes, which Orthanc (up since the first test) has long done."""
    form_upload(files, base + "/api/v1/instance/upload/?Project=bench", 4, hdr)


def _side_by_side(args, tmp: Path, sets: dict, backends: list, orthanc, o: str, study: str, series: str,
                  sops: list, figures: dict):
    n = len(sets["http"])
    figures["http", "orthanc"], *figures["cpu", "orthanc"] = with_cpu(
        orthanc.pid, n, lambda: send_all(sets["http"], o + "/instances", args.k, True, {}))
    figures["stow", "orthanc"] = len(sets["stow"]) / stow(sets["stow"], o + "/dicom-web/studies", args.k,
                                                          args.stow_per, {})
    figures["dimse", "orthanc"] = len(sets["dimse"]) / storescu(sets["dimse"], ORTHANC_DICOM, "ORTHANC")
    ow = f"{o}/dicom-web/studies/{study}/series/{series}"
    figures["wado", "orthanc"] = _wado(ow, sops, {}, args)
    for name, url, n_proc in backends:
        db_url = _fresh_pg(url) if url else ""
        dicom_port = free_port()
        proc, base = start_lightbox(tmp / f"lb-{name.replace(' ', '')}", database_url=db_url, dicom_port=dicom_port,
                                    processes=n_proc)
        try:
            hdr = {"X-USERNAME": "admin", "X-PASSWORD": ADMIN_PASSWORD}
            n = len(sets["http"])
            # This shared machine's speed drifts by ±20% over minutes: Orthanc's HTTP test runs again right
            # before each Lightbox's, and the HTTP ratio is taken against that paired round; of --rounds
            # such pairs, the one with the median ratio is printed (and every pair's ratio beside it).
            _warm_up(cached(sets["warm", name], True), base, hdr)
            pairs = []
            for r in range(args.rounds):
                theirs = _orthanc_http(args, cached(sets["http-orthanc", name, r], True), orthanc, o)
                mine = with_cpu(proc.pid, n, lambda files=cached(sets["http", name, r], True): form_upload(
                    files, base + "/api/v1/instance/upload/?Project=bench", args.k, hdr))
                pairs.append((mine, theirs))
                cached(sets["http-orthanc", name, r] + (sets["http", name, r] if r else []), False)  # 0: every Lightbox's
            figures["http rounds", name] = [mine[0] / theirs[0] for mine, theirs in pairs]
            mine, theirs = sorted(pairs, key=lambda p: p[0][0] / p[1][0])[len(pairs) // 2]
            figures["http", name], *figures["cpu", name] = mine
            figures["http", "orthanc", name], *figures["cpu", "orthanc", name] = theirs
            tok = token_of(base)
            figures["stow", "orthanc", name] = _orthanc_stow(args, cached(sets["stow-orthanc", name], True), o)
            figures["stow", name] = len(sets["stow"]) / stow(sets["stow"], base + "/dicomweb/bench/studies",
                                                              args.k, args.stow_per, tok)
            cached(sets["stow-orthanc", name], False)
            figures["dimse", "orthanc", name] = args.dimse_n / storescu(
                cached(sets["dimse-orthanc", name], True), ORTHANC_DICOM, "ORTHANC")
            figures["dimse", name] = len(sets["dimse"]) / storescu(sets["dimse"], dicom_port, "BENCH")
            cached(sets["dimse-orthanc", name] + sets["warm", name], False)
            lw = f"{base}/dicomweb/bench/studies/{study}/series/{series}"
            figures["wado", "orthanc", name] = _wado(ow, sops, {}, args)  # paired, as HTTP and STOW
            figures["wado", name] = _wado(lw, sops, tok, args)
            figures["rss", name] = peak_rss_mb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    print(f"\n{args.n} CT 512x512 instances{' (HTTP: each its own study)' if args.one_per_study else ''}; "
          f"{args.k} clients for HTTP and STOW; 16 clients for retrieval")
    print(f"{'test':44} {'backend':12} {'Lightbox':>10} {'Orthanc':>10} {'ratio':>7}")
    labels = {"http": "HTTP one instance per request (inst/s)", "stow": f"STOW-RS {args.stow_per}/request (inst/s)",
              "dimse": f"storescu, one association of {args.dimse_n} (inst/s)"}
    print("(sqlite xN: `lightbox serve --processes N`, N web processes on one port; RSS is the first process's)")
    print(f"(each ratio: against Orthanc's round run just before that Lightbox's; its first HTTP and "
          f"STOW rounds: {figures['http', 'orthanc']:.1f} and {figures['stow', 'orthanc']:.1f} inst/s)")
    for name, _, _ in backends:
        for test, label in labels.items():
            lb, ot = figures[test, name], figures.get((test, "orthanc", name), figures[test, "orthanc"])
            print(f"{label:44} {name:12} {lb:10.1f} {ot:10.1f} {lb / ot:6.2f}x")
            if test == "http" and len(figures["http rounds", name]) > 1:
                print(f"{'  (median of the paired rounds: ' + ', '.join(f'{x:.2f}x' for x in figures['http rounds', name]) + ')':44}")
        for key, label in (("metadata_ms", "WADO metadata, 100-instance series (ms p50)"),
                           ("series_rps", "WADO series retrieve, 16 clients (req/s)"),
                           ("instance_rps", "WADO instance retrieve, 16 clients (req/s)")):
            paired = figures.get(("wado", "orthanc", name), figures["wado", "orthanc"])
            lb, ot = figures["wado", name][key], paired[key]
            ratio = ot / lb if key.endswith("_ms") else lb / ot
            print(f"{label:44} {name:12} {lb:10.1f} {ot:10.1f} {ratio:6.2f}x")
        print(f"{'server peak RSS (MB)':44} {name:12} {figures['rss', name]:10.0f}")
        for i, label in enumerate(("server CPU (ms per instance)", "client CPU (ms per instance)",
                                   "server cores busy", "server context switches per instance",
                                   "server run-queue wait (ms per instance)")):
            lb, ot = figures["cpu", name][i], figures["cpu", "orthanc", name][i]
            print(f"{'HTTP test: ' + label:44} {name:12} {lb:10.2f} {ot:10.2f}")


def _wado(series_url: str, sops: list[str], headers: dict, args) -> dict:
    meta = series_url + "/metadata"
    timed_gets([meta], 1, headers)  # the first answer (Lightbox keeps the metadata it reads)
    times = []
    for _ in range(args.repeat):
        times.append(timed_gets([meta], 1, headers) * 1000)
    times.sort()
    series_n = 32
    instance_n = 800
    urls = [series_url + f"/instances/{sops[i % len(sops)]}" for i in range(instance_n)]
    return {"metadata_ms": times[len(times) // 2],
            "series_rps": series_n / timed_gets([series_url] * series_n, 16, headers),
            "instance_rps": instance_n / timed_gets(urls, 16, headers)}


def _fresh_pg(server_url: str) -> str:
    """A new empty database on the PostgreSQL server at `server_url` (dropped by hand; named for the bench)."""
    import asyncio
    from urllib.parse import urlparse, urlunparse

    import asyncpg

    name = f"lightbox_bench_{os.getpid()}"
    u = urlparse(server_url)

    async def go():
        con = await asyncpg.connect(host=u.hostname, port=u.port or 5432, user=u.username or "postgres",
                                    password=u.password, database=(u.path or "/postgres").lstrip("/") or "postgres")
        try:
            await con.execute(f"DROP DATABASE IF EXISTS {name}")
            await con.execute(f"CREATE DATABASE {name}")
        finally:
            await con.close()

    asyncio.run(go())
    return urlunparse(u._replace(path=f"/{name}"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=1000, help="instances")
    ap.add_argument("-k", type=int, default=4, help="parallel clients")
    ap.add_argument("--url", help="upload URL of another server (default: start a local Lightbox)")
    ap.add_argument("--raw", action="store_true", help="POST each file as application/dicom (Orthanc /instances)")
    ap.add_argument("--big-gb", type=float, default=0, help="instead: one multipart upload of this many GB")
    ap.add_argument("--orthanc", action="store_true", help="Lightbox and Orthanc side by side (every test)")
    ap.add_argument("--postgres", default="", help="with --orthanc: also Lightbox on this PostgreSQL server URL")
    ap.add_argument("--stow-n", type=int, default=500, help="instances sent by STOW-RS")
    ap.add_argument("--stow-per", type=int, default=50, help="instances per STOW-RS request")
    ap.add_argument("--dimse-n", type=int, default=500, help="instances in the storescu association")
    ap.add_argument("--processes", type=lambda v: [int(x) for x in v.split(",")], default=[1, 2, 3],
                    help="with --orthanc: Lightbox's web processes, one run per value (default 1,2,3)")
    ap.add_argument("--repeat", type=int, default=9, help="repeats of the metadata request")
    ap.add_argument("--rounds", type=int, default=3,
                    help="with --orthanc: paired HTTP rounds (Orthanc's, then Lightbox's, each on files new to it) "
                         "per Lightbox; the median pair is printed")
    ap.add_argument("--one-per-study", action="store_true",
                    help="with --orthanc: the HTTP test's instances each their own study (a CR/DX site)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="lightbox-bench-") as tmp:
        tmp = Path(tmp)
        if args.orthanc:
            side_by_side(args, tmp)
            return
        proc = None
        headers = {}
        url = args.url
        if not url:
            proc, base = start_lightbox(tmp / "data")
            url = base + "/api/v1/studies?Project=bench"
            headers = {"X-USERNAME": "admin", "X-PASSWORD": ADMIN_PASSWORD}
        try:
            if args.big_gb:
                one = make_files(1, tmp / "one")[0]
                count = int(args.big_gb * 1024**3 // one.stat().st_size) + 1
                files = [samples.restamp(one, tmp / "big" / f"{i}.dcm") for i in range(count)]
                total = sum(f.stat().st_size for f in files)
                body, ctype = related(files)
                settle()
                t0 = time.perf_counter()
                r = httpx.post(url, content=body, headers={**headers, "Content-Type": ctype}, timeout=3600)
                dt = time.perf_counter() - t0
                print(f"big upload: {total / 1e9:.2f} GB, {count} instances in {dt:.1f} s "
                      f"({total / 1e6 / dt:.1f} MB/s), HTTP {r.status_code}")
            else:
                files = make_files(args.n, tmp / "files")
                total = sum(f.stat().st_size for f in files)
                dt = send_all(files, url, args.k, args.raw, headers)
                print(f"{len(files)} instances ({total / 1e6:.0f} MB) with {args.k} clients in {dt:.1f} s: "
                      f"{len(files) / dt:.1f} instances/s, {total / 1e6 / dt:.1f} MB/s")
            if proc:
                print(f"server peak RSS: {peak_rss_mb(proc.pid):.0f} MB")
        finally:
            if proc:
                proc.terminate()
                proc.wait(timeout=30)


if __name__ == "__main__":
    main()
