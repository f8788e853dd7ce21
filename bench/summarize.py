#!/usr/bin/env python3
"""Summarize one bench/compare.sh run: skipq beside graphile-worker, pg-boss
and raw SQL, with the ratios skipq/peer and issue 6's targets.

    python3 bench/summarize.py [--md] bench/results/<ts>

Reads <ts>/skipq.jsonl (skipq bench --json lines plus the pgbench INSERT
lines compare.sh adds), <ts>/peers/*/results.jsonl (the peer harness) and
<ts>/peer_rss.txt (node processes' VmHWM samples). Cells are medians over
repetitions. Field mapping: the peers' `jobs_per_s` (node) and `rows_per_s`
(raw claim cycles) are our `jobs_per_s`; their `p50/p95/p99` are our
`p50_ms/p95_ms/p99_ms`; their `ms` is our `seconds` * 1000.
"""
import glob
import json
import os
import statistics
import sys

md = len(sys.argv) > 1 and sys.argv[1] == "--md"
args = sys.argv[2:] if md else sys.argv[1:]
if len(args) != 1:
    print("usage: summarize.py [--md] RESULTS_DIR", file=sys.stderr)
    sys.exit(2)
d = args[0]


def load(path):
    out = []
    try:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line.startswith("{"):
                    try:
                        out.append(json.loads(line))
                    except ValueError:
                        pass
    except OSError:
        pass
    return out


rows = load(os.path.join(d, "skipq.jsonl"))
for p in sorted(glob.glob(os.path.join(d, "peers", "*", "results.jsonl"))):
    rows += load(p)

# normalize peer field names to ours
for r in rows:
    if "rows_per_s" in r and "jobs_per_s" not in r:
        r["jobs_per_s"] = r["rows_per_s"]
    for k in ("p50", "p95", "p99", "max"):
        if k in r and k + "_ms" not in r:
            r[k + "_ms"] = r[k]
    if "ms" in r and "seconds" not in r:
        r["seconds"] = r["ms"] / 1000.0

rss = {}
try:
    with open(os.path.join(d, "peer_rss.txt")) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[2].isdigit():
                key = (parts[0], parts[1])
                rss[key] = max(rss.get(key, 0), int(parts[2]))
except OSError:
    pass


def med(rs, field):
    v = [r[field] for r in rs if isinstance(r.get(field), (int, float))]
    return statistics.median(v) if v else None


def pick(system, metric, config=None, **kw):
    out = []
    for r in rows:
        if r.get("system") != system or r.get("metric") != metric:
            continue
        if config is not None and r.get("config") != config:
            continue
        if any(r.get(k) != v for k, v in kw.items()):
            continue
        out.append(r)
    return out


def configs(system, metric):
    return sorted({r.get("config") for r in pick(system, metric)})


def best(system, metric, field="jobs_per_s", lower=False, skip_capped=True):
    """(value, config) of the best configuration's median."""
    cands = []
    for c in configs(system, metric):
        rs = [r for r in pick(system, metric, c) if not (skip_capped and r.get("capped"))]
        v = med(rs, field)
        if v is not None:
            cands.append((v, c))
    if not cands:
        return (None, None)
    return min(cands) if lower else max(cands)


def sk(metric, config=None, field="jobs_per_s"):
    rs = pick("skipq", metric, config)
    return med(rs, field)


def paired(metric, s_cfg, raw_cfg):
    """Ratios skipq/raw of the pairs run back to back (the same "rep"
    label): (median, [ratios]), or (None, [])."""
    s_by = {r.get("rep"): r.get("jobs_per_s") for r in pick("skipq", metric, s_cfg)}
    ratios = []
    for r in pick("raw-sql", metric, raw_cfg):
        a, b = s_by.get(r.get("rep")), r.get("jobs_per_s")
        if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b > 0:
            ratios.append(a / b)
    return (statistics.median(ratios) if ratios else None, ratios)


def fmt(v, digits=0):
    if v is None:
        return "-"
    if digits == 0:
        return f"{v:,.0f}"
    return f"{v:,.{digits}f}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "-"
    return f"{a / b:.2f}x"


GW, BOSS = "graphile-worker", "pg-boss"
skipq_jobs = None
for r in pick("skipq", "enqueue_bulk", "c-batch"):
    skipq_jobs = r.get("jobs")

# raw COPY of the same number of rows as skipq's bulk enqueue, else the largest
copies = pick("raw-sql", "enqueue_bulk", "copy")
copy_sizes = sorted({r.get("jobs") for r in copies if r.get("jobs")})
copy_n = skipq_jobs if skipq_jobs in copy_sizes else (copy_sizes[-1] if copy_sizes else None)
raw_copy = med(pick("raw-sql", "enqueue_bulk", "copy", jobs=copy_n), "jobs_per_s") if copy_n else None
# the bulk target's yardstick: psql's COPY of the same rows into skipq.jobs
# (compare.sh); runs before it had none, and fall back to the peer table's
copy_same = med(pick("raw-sql", "enqueue_bulk", "copy-skipq-jobs", jobs=skipq_jobs), "jobs_per_s")
# psql's \copy timed start to exit, as skipq bench times `skipq enqueue`
copy_proc = med(pick("raw-sql", "enqueue_bulk", "copy-skipq-jobs-process", jobs=skipq_jobs),
                "jobs_per_s")
bulk_ref = copy_same if copy_same is not None else raw_copy
bulk_ref_name = ("COPY into skipq.jobs" if copy_same is not None else
                 f"COPY {copy_n} rows, peer table" if copy_n else None)
raw_update = med(pick("raw-sql", "claim_cycle", "claim-update", batch=100, clients=2), "jobs_per_s")
raw_fused = med(pick("raw-sql", "claim_cycle", "claim-fused", batch=100, clients=2), "jobs_per_s")
pgb1 = med(pick("raw-sql", "enqueue_single", "pgbench-insert-1conn"), "jobs_per_s")
pgb8 = med(pick("raw-sql", "enqueue_single", "pgbench-insert-8conn"), "jobs_per_s")
pgp1 = med(pick("raw-sql", "enqueue_single", "pgbench-skipq-stmt-1conn"), "jobs_per_s")
pgp8 = med(pick("raw-sql", "enqueue_single", "pgbench-skipq-stmt-8conn"), "jobs_per_s")

gw_bulk, gw_bulk_c = best(GW, "enqueue_bulk")
bo_bulk, bo_bulk_c = best(BOSS, "enqueue_bulk")
gw_seq, _ = best(GW, "enqueue_single_seq")
bo_seq, _ = best(BOSS, "enqueue_single_seq")
gw_par, _ = best(GW, "enqueue_single_par10")
bo_par, _ = best(BOSS, "enqueue_single_par10")
gw_drain, gw_drain_c = best(GW, "drain")
bo_drain, bo_drain_c = best(BOSS, "drain")
gw_lat50, gw_lat_c = best(GW, "latency", "p50_ms", lower=True)
bo_lat50, bo_lat_c = best(BOSS, "latency", "p50_ms", lower=True)


def lat(system, cfg, field):
    return med(pick(system, "latency", cfg), field) if cfg else None


# skipq's drain: its best configuration beside the peers' best (the targets);
# one worker process at the default settings for CPU and RSS
s_drain, drain_cfg = best("skipq", "drain")
# the best with succeeded rows kept (the default; configs without "del")
keep_cfgs = [c for c in configs("skipq", "drain") if "del" not in (c or "")]
keep_best = max(((sk("drain", c), c) for c in keep_cfgs if sk("drain", c) is not None),
                default=(None, None))
one_cfg = min(configs("skipq", "drain") or [None], key=lambda c: (len(c or ""), c or ""))
s_drain1 = sk("drain", one_cfg)
s_lat = {f: sk("latency", None, f) for f in ("p50_ms", "p95_ms", "p99_ms", "max_ms",
                                             "from_commit_p50_ms", "from_commit_p99_ms",
                                             "enqueue_p50_ms")}
s_batch = sk("enqueue_bulk", "c-batch")
s_cli = sk("enqueue_bulk", "cli-stdin")
s_1 = sk("enqueue_single", "1conn")
s_8 = sk("enqueue_single", "8conn")
s_8w = sk("enqueue_single", "8conn-waiting")  # skipq notifies every job, as the INSERT's trigger does
# skipq_enqueue and the yardstick's INSERT interleaved 100 at a time on
# one connection each, in one process (skipq bench enqueue): per
# repetition and pair, the ratio of the two rates
def vs_insert(cfg):
    rs = [r["jobs_per_s"] / r["insert_jobs_per_s"] for r in pick("skipq", "enqueue_single", cfg)
          if isinstance(r.get("jobs_per_s"), (int, float))
          and isinstance(r.get("insert_jobs_per_s"), (int, float)) and r["insert_jobs_per_s"] > 0]
    return rs, (statistics.median(rs) if rs else None)


# no worker waits (skipq sends no NOTIFY; the INSERT's trigger always
# does), and with one waiting (both notify for every job)
vs_ins, vs_ins_m = vs_insert("1conn-vs-insert")
vs_insw, vs_insw_m = vs_insert("1conn-vs-insert-waiting")
s_cmd = sk("command_drain")
s_rss = sk("drain", one_cfg, "max_rss_kb")
s_cpu = sk("drain", one_cfg, "cpu_s")
deep_all = configs("skipq", "deep")
deep = sorted((c for c in deep_all if c.startswith("backlog")),
              key=lambda c: int(c.replace("backlog", "") or 0))
deep_sched = [c for c in deep_all if c.startswith("scheduled")]
deep_small = sk("deep", deep[0]) if deep else None
deep_big = sk("deep", deep[-1]) if len(deep) > 1 else None
deep_idx = all(r.get("claim_uses_index") for r in pick("skipq", "deep")) if deep else None
gw_rss = rss.get((GW, gw_drain_c)) if gw_drain_c else None
bo_rss = rss.get((BOSS, bo_drain_c)) if bo_drain_c else None

H = ["figure", "skipq", "graphile-worker best", "pg-boss best", "raw SQL",
     "skipq/gw", "skipq/boss", "skipq/raw"]
T = []


def row(name, s, g, b, r, digits=0, gcfg=None, bcfg=None, rname=None):
    T.append([name, fmt(s, digits),
              fmt(g, digits) + (f" ({gcfg})" if gcfg and g is not None else ""),
              fmt(b, digits) + (f" ({bcfg})" if bcfg and b is not None else ""),
              fmt(r, digits) + (f" ({rname})" if rname and r is not None else ""),
              ratio(s, g), ratio(s, b), ratio(s, r)])


row("bulk enqueue, C batch, jobs/s", s_batch, gw_bulk, bo_bulk, bulk_ref,
    gcfg=gw_bulk_c, bcfg=bo_bulk_c, rname=bulk_ref_name)
row("bulk enqueue, CLI stdin, jobs/s", s_cli, gw_bulk, bo_bulk, bulk_ref,
    gcfg=gw_bulk_c, bcfg=bo_bulk_c, rname=bulk_ref_name)
if copy_proc is not None:
    row("bulk enqueue, CLI stdin vs psql \\copy, both whole processes", s_cli, None, None,
        copy_proc, rname="psql \\copy process")
if copy_same is not None and raw_copy is not None:
    row("bulk enqueue, C batch vs the peer table", s_batch, None, None, raw_copy,
        rname=f"COPY {copy_n} rows, peer table")
row("single enqueue, 1 connection, jobs/s", s_1, gw_seq, bo_seq, pgb1, rname="pgbench 1 client")
row("single enqueue, 8 conns (peers: 10 in flight)", s_8, gw_par, bo_par, pgb8,
    rname="pgbench 8 clients")
if s_8w is not None:
    row("single enqueue, 8 conns, a worker waiting (both notify every job)", s_8w, None, None,
        pgb8, rname="pgbench 8 clients")
if pgp1 is not None or pgp8 is not None:
    row("single enqueue, 1 connection, vs pgbench sending skipq's statement", s_1, None, None,
        pgp1, rname="pgbench, skipq's statement, 1 client")
    row("single enqueue, 8 conns, vs pgbench sending skipq's statement", s_8, None, None,
        pgp8, rname="pgbench, skipq's statement, 8 clients")
row(f"drain {drain_cfg or ''}, jobs/s".replace("  ", " "), s_drain, gw_drain, bo_drain, raw_update,
    gcfg=gw_drain_c, bcfg=bo_drain_c, rname="claim-update B=100 2cl")
row("drain vs raw fused", s_drain, None, None, raw_fused, rname="claim-fused B=100 2cl")
if keep_best[1] and keep_best[1] != drain_cfg:
    row(f"drain {keep_best[1]}, succeeded rows kept (default), jobs/s", keep_best[0], gw_drain,
        bo_drain, raw_update, gcfg=gw_drain_c, bcfg=bo_drain_c, rname="claim-update B=100 2cl")
if one_cfg != drain_cfg:
    row(f"drain {one_cfg}, one worker process, jobs/s", s_drain1, gw_drain, bo_drain, raw_update,
        gcfg=gw_drain_c, bcfg=bo_drain_c, rname="claim-update B=100 2cl")
for f, name in (("p50_ms", "p50"), ("p95_ms", "p95"), ("p99_ms", "p99")):
    row(f"pickup latency {name}, ms (lower is better)", s_lat[f], lat(GW, gw_lat_c, f),
        lat(BOSS, bo_lat_c, f), None, digits=2, gcfg=gw_lat_c, bcfg=bo_lat_c)
if s_lat["from_commit_p50_ms"] is not None:
    T.append(["pickup from the enqueue's commit p50 / p99 ms; the enqueue call p50",
              f"{fmt(s_lat['from_commit_p50_ms'], 2)} / {fmt(s_lat['from_commit_p99_ms'], 2)}; "
              f"{fmt(s_lat['enqueue_p50_ms'], 2)}", "", "", "", "", "", ""])
row(f"worker peak RSS {one_cfg}, kB (lower is better)", s_rss, gw_rss, bo_rss, None,
    gcfg=gw_drain_c, bcfg=bo_drain_c)
row("command drain /bin/true c8, jobs/s", s_cmd, None, None, None)
row(f"worker CPU for the drain {one_cfg}, s", s_cpu, None, None, None, digits=2)
if deep:
    for c in deep:
        v = sk("deep", c)
        T.append([f"deep: drain with {c.replace('backlog', '')} waiting, jobs/s", fmt(v),
                  "", "", "", "", "", ""])
        T.append([f"deep: claim p50 / p99 ms with {c.replace('backlog', '')} waiting",
                  f"{fmt(sk('deep', c, 'claim_p50_ms'), 2)} / {fmt(sk('deep', c, 'claim_p99_ms'), 2)}",
                  "", "", "", "", "", ""])
for c in deep_sched:
    n = c.replace("scheduled", "")
    T.append([f"deep: drain of 10000 runnable among {n} scheduled, jobs/s",
              fmt(sk("deep", c)), "", "", "", "", "", ""])
    T.append([f"deep: claim p50 / p99 ms, nothing runnable, {n} scheduled",
              f"{fmt(sk('deep', c, 'claim_p50_ms'), 2)} / {fmt(sk('deep', c, 'claim_p99_ms'), 2)}",
              "", "", "", "", "", ""])
st = pick("skipq", "steady")
if st:
    T.append([f"steady {st[0].get('config')}: p50 / p99 / max ms, worst stall ms",
              f"{fmt(med(st, 'p50_ms'), 2)} / {fmt(med(st, 'p99_ms'), 2)} / "
              f"{fmt(med(st, 'max_ms'), 2)}, {fmt(med(st, 'worst_stall_ms'), 1)}",
              "", "", "", "", "", ""])


def target(name, ok, detail):
    verdict = "n/a" if ok is None else ("met" if ok else "NOT MET")
    return [name, detail, verdict]


def ge(a, b, k=1.0):
    return None if a is None or b is None else a >= k * b


def r_(a, b):
    return "-" if a is None or b is None or b == 0 else f"{a / b:.2f}x"


def pair_target(name, s, ref, k, metric, s_cfg, raw_cfg, ref_name="", also=""):
    """Judged by the median of the back-to-back pairs' ratios when there
    are pairs (the enqueue figures: see compare.sh), else by the medians.
    `also` is said after the verdict's figures and does not change it."""
    pm, ratios = paired(metric, s_cfg, raw_cfg)
    detail = f"{fmt(s)} vs {fmt(ref)}{ref_name} = {r_(s, ref)}"
    if pm is None or len(ratios) < 2:
        return target(name, ge(s, ref, k), detail + also)
    detail += (f"; median of {len(ratios)} back-to-back pairs {pm:.2f}x"
               f" ({min(ratios):.2f}x to {max(ratios):.2f}x)")
    return target(name, pm >= k, detail + also)


TG = [
    target("drain >= 2x graphile-worker best", ge(s_drain, gw_drain, 2.0),
           f"{fmt(s_drain)} ({drain_cfg}) vs {fmt(gw_drain)} = {r_(s_drain, gw_drain)}"
           + (f"; rows kept {fmt(keep_best[0])} ({keep_best[1]}) = {r_(keep_best[0], gw_drain)}"
              if keep_best[1] and keep_best[1] != drain_cfg else "")),
    target("drain >= 1.0x raw claim-update B=100, 2 clients", ge(s_drain, raw_update),
           f"{fmt(s_drain)} ({drain_cfg}) vs {fmt(raw_update)} = {r_(s_drain, raw_update)}"
           + (f"; rows kept {fmt(keep_best[0])} ({keep_best[1]}) = {r_(keep_best[0], raw_update)}"
              if keep_best[1] and keep_best[1] != drain_cfg else "")),
    target("(aim) drain >= raw claim-fused B=100", ge(s_drain, raw_fused),
           f"{fmt(s_drain)} vs {fmt(raw_fused)} = {r_(s_drain, raw_fused)}"),
    # the issue times "enqueue-commit -> handler start": from the enqueue
    # call's return; the peers' figure (from before the call) is beside it
    target("pickup p50 <= 1 ms (from the enqueue's commit)",
           None if s_lat["from_commit_p50_ms"] is None else s_lat["from_commit_p50_ms"] <= 1.0,
           f"{fmt(s_lat['from_commit_p50_ms'], 2)} ms; from before the enqueue call "
           f"{fmt(s_lat['p50_ms'], 2)} ms (the call itself {fmt(s_lat['enqueue_p50_ms'], 2)} ms)"),
    target("pickup p99 <= 3 ms (from the enqueue's commit)",
           None if s_lat["from_commit_p99_ms"] is None else s_lat["from_commit_p99_ms"] <= 3.0,
           f"{fmt(s_lat['from_commit_p99_ms'], 2)} ms; from before the enqueue call "
           f"{fmt(s_lat['p99_ms'], 2)} ms"),
    target("pickup p50 and p99 lower than both peers",
           None if None in (s_lat["p50_ms"], gw_lat50, bo_lat50) else
           s_lat["p50_ms"] < min(gw_lat50, bo_lat50) and
           s_lat["p99_ms"] < min(lat(GW, gw_lat_c, "p99_ms"), lat(BOSS, bo_lat_c, "p99_ms")),
           f"p50 {fmt(s_lat['p50_ms'], 2)} vs {fmt(gw_lat50, 2)} / {fmt(bo_lat50, 2)}; "
           f"p99 {fmt(s_lat['p99_ms'], 2)} vs {fmt(lat(GW, gw_lat_c, 'p99_ms'), 2)} / "
           f"{fmt(lat(BOSS, bo_lat_c, 'p99_ms'), 2)}"),
    pair_target("bulk enqueue, C batch >= 0.8x raw COPY", s_batch, bulk_ref, 0.8,
                "enqueue_bulk", "c-batch", "copy-skipq-jobs", f" ({bulk_ref_name})"),
    pair_target("bulk enqueue, CLI stdin >= 0.8x raw COPY", s_cli, bulk_ref, 0.8,
                "enqueue_bulk", "cli-stdin", "copy-skipq-jobs", f" ({bulk_ref_name})",
                "" if copy_proc is None else
                f"; like for like, against psql's \\copy timed as a whole process: "
                f"{fmt(copy_proc)} = {r_(s_cli, copy_proc)}, median of pairs "
                f"{paired('enqueue_bulk', 'cli-stdin', 'copy-skipq-jobs-process')[0] or 0:.2f}x"),
    pair_target("single enqueue from C >= pgbench, same INSERT (1 client)", s_1, pgb1, 1.0,
                "enqueue_single", "1conn", "pgbench-insert-1conn"),
    target("single enqueue from C >= the same INSERT, interleaved 100 at a time (1 connection)",
           None if vs_ins_m is None else vs_ins_m >= 1.0,
           "-" if vs_ins_m is None else
           f"no worker waiting: median of {len(vs_ins)} {vs_ins_m:.2f}x "
           f"({min(vs_ins):.2f}x to {max(vs_ins):.2f}x)"
           + ("" if vs_insw_m is None else
              f"; a worker waiting (both notify every job): median {vs_insw_m:.2f}x "
              f"({min(vs_insw):.2f}x to {max(vs_insw):.2f}x)")),
    pair_target("single enqueue from C >= pgbench, same INSERT (8 clients)", s_8, pgb8, 1.0,
                "enqueue_single", "8conn", "pgbench-insert-8conn"),
    pair_target("single enqueue from C >= pgbench, same INSERT (8 clients, a worker waiting)",
                s_8w, pgb8, 1.0, "enqueue_single", "8conn-waiting", "pgbench-insert-8conn"),
    pair_target("(like for like) single enqueue from C >= pgbench sending skipq's statement, 1 client",
                s_1, pgp1, 1.0, "enqueue_single", "1conn", "pgbench-skipq-stmt-1conn"),
    pair_target("(like for like) single enqueue from C >= pgbench sending skipq's statement, 8 clients",
                s_8, pgp8, 1.0, "enqueue_single", "8conn", "pgbench-skipq-stmt-8conn"),
    target("command handlers (/bin/true) >= 2,000 jobs/s at c8",
           None if s_cmd is None else s_cmd >= 2000, f"{fmt(s_cmd)} jobs/s"),
    target("worker peak RSS <= 10 MB at c16", None if s_rss is None else s_rss <= 10240,
           f"{fmt(s_rss)} kB (graphile {fmt(gw_rss)} kB, pg-boss {fmt(bo_rss)} kB)"),
    target("deep: large-backlog drain within 15% of 10,000",
           None if deep_small is None or deep_big is None else deep_big >= 0.85 * deep_small,
           f"{fmt(deep_big)} vs {fmt(deep_small)} = {r_(deep_big, deep_small)} "
           f"({deep[-1] if deep else '-'})"),
    target("deep: claim uses the partial index", deep_idx,
           "EXPLAIN of the worker's claim names jobs_runnable_idx" if deep_idx else "-"),
    target("soak: 10 min at 80% of max drain", None, "not part of this run"),
]


def table(header, body):
    if md:
        out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        out += ["| " + " | ".join(b) + " |" for b in body]
        return "\n".join(out)
    w = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(header)]
    line = lambda cols: "  ".join(c.ljust(w[i]) for i, c in enumerate(cols)).rstrip()
    return "\n".join([line(header), line(["-" * n for n in w])] + [line(b) for b in body])


reps = len({r.get("rep") for r in pick("skipq", "drain")}) or 0
out = []
try:
    with open(os.path.join(d, "machine.txt")) as f:
        out += [l.rstrip() for l in f if l.strip()]
except OSError:
    pass
try:
    with open(os.path.join(d, "peers_note.txt")) as f:
        out.append("NOTE: " + f.read().strip())
except OSError:
    pass
out.append(f"skipq repetitions: {reps}; cells are medians; ratios are skipq/peer "
           "(for latency and RSS lower is better)")
out.append("")
out.append(table(H, T))
out.append("")
out.append("Targets (issue 6):")
out.append(table(["target", "measured", "verdict"], TG))
print("\n".join(out))
