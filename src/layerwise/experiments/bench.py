"""``layerwise bench``: every method's comparison on Fashion-MNIST, over seeds, with statistics.

Each job is one method command (the same command line a user types) run once per seed into
``OUT/<job>/seed<k>/``; a finished job leaves ``bench.json`` beside its ``results.json`` and is not
run again, so an interrupted bench continues where it stopped (base models are cached by the
commands themselves inside each job folder). Then, per job, the seeds are combined into
``OUT/<job>/results.json`` (schema ``layerwise.results/2``: mean ± std and per-seed values, a
Wilson 95 % interval on the pooled test predictions, and paired comparisons of the method against
each rival on the same test images), and ``OUT/summary.json`` / ``OUT/summary.md`` list every
figure with the command that produced it. :func:`readme_section` turns a summary into the
README's results section (``layerwise bench --readme SUMMARY``).

Training subsets and epochs are chosen to fit the machine (``JOBS`` states them; every job's
command line is in the summary); the test split is always the full 10,000 images.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import LayerwiseError
from ..storage import atomic_write_json, atomic_write_text
from .common import CommandReport, run_step
from .recipes import ROBUST_RESIDUAL, checkpoint_token, token_base

log = logging.getLogger(__name__)

NAME = "bench"
HELP = "every method on fashion-mnist over seeds, with confidence intervals and paired tests"

README_BEGIN = "<!-- bench:begin (written by `layerwise bench --readme`; do not edit by hand) -->"
README_END = "<!-- bench:end -->"


@dataclass(frozen=True)
class Job:
    """One method comparison: its command line (without --out/--seed) and the pairs to test."""

    key: str
    method: str
    argv: tuple[str, ...]
    quick_argv: tuple[str, ...] | None        # None: not part of --quick (the deeper models)
    compare: tuple[tuple[str, str], ...]      # (method variant, rival variant)
    what: str = ""


FM = ("--dataset", "fashion-mnist")


def base(model: str) -> str:
    """The argv token a job uses for the checkpoint of the shared base model ``model``."""
    return checkpoint_token(model)


# Base models trained once per seed and shared by the jobs that name them, so that AdaLayerNet and
# LWAC start from the same network and no job trains it again; LWAC's bypass-robust recipe
# (recipes.ROBUST_RESIDUAL).
ROBUST = ROBUST_RESIDUAL
BASES: dict[str, Job] = {
    "resnet20": Job("base-resnet20", "train",
                    ("train", "--model", "resnet20", *FM, *ROBUST, "--epochs", "8", "--train-limit", "10000",
                     "--val-limit", "1000", "--threads", "2"),
                    ("train", "--model", "resnet20", *FM, *ROBUST, "--epochs", "2", "--train-limit", "1000",
                     "--val-limit", "300", "--threads", "2"),
                    (), "ResNet-20 trained once per seed, shared by compress and lwac"),
    "resnet56": Job("base-resnet56", "train",
                    ("train", "--model", "resnet56", *FM, *ROBUST, "--epochs", "8", "--train-limit", "8000",
                     "--val-limit", "1000", "--threads", "2"),
                    None, (), "ResNet-56 trained once per seed, shared by lwac"),
}

def compress_job(budget: str, what: str, quick: bool = True) -> Job:
    """AdaLayerNet on the shared ResNet-20 at a packed size of ``budget`` x the dense fp32 file."""
    common = ("compress", "--model", "resnet20", *FM, "--checkpoint", base("resnet20"), "--budget", budget)
    return Job(f"compress-resnet20-b{budget}", "compress",
               (*common, "--train-limit", "10000", "--val-limit", "1000", "--finetune-epochs", "1",
                "--uniform-top", "2", "--threads", "2"),
               (*common, "--quick", "--train-limit", "1000", "--val-limit", "300") if quick else None,
               (("adalayer", "dense"), ("adalayer", "uniform")), what)


def lwac_job(model: str, quick: bool) -> Job:
    """LWAC at batch 1 on the shared ``model`` base (single-threaded, as on a device)."""
    common = ("lwac", "--model", model, *FM, "--checkpoint", base(model))
    return Job(f"lwac-{model}", "lwac", (*common, "--val-limit", "1000", "--threads", "1", "--latency-n", "200"),
               (*common, "--quick", "--val-limit", "300", "--threads", "1") if quick else None,
               (("lwac", "dense"),), f"LWAC on a {model.replace('resnet', 'ResNet-')} at batch 1")


# In the order they run: each method's main comparison over every seed first (UnIT, whose seeds
# cost the most, after the others), then ELA on the deeper model, the other budgets, and LWAC on
# the deeper model (which needs its own base), so that a bench cut short has the main results.
JOBS: tuple[Job, ...] = (
    compress_job("0.10", "AdaLayerNet at a packed size of 10 % of the dense file against uniform bits"),
    lwac_job("resnet20", quick=True),
    Job("ela-resnet20", "ela",
        ("ela", "--model", "resnet20", *FM, "--epochs", "4", "--train-limit", "4000", "--threads", "2"),
        # not --quick: ela's --quick also cuts the test split, which the bench never does
        ("ela", "--model", "resnet20", *FM, "--epochs", "2", "--windows", "1-1", "--train-limit", "500",
         "--step-rounds", "1", "--threads", "2"),
        (("ela", "mrla-b"), ("ela", "mrla-l"), ("ela", "resnet")),
        "ELA against ResNet, MRLA-B and MRLA-L trained with one recipe"),
    Job("unit-tiny-cnn", "unit",
        ("unit", "--model", "tiny-cnn", *FM, "--epochs", "8", "--train-limit", "20000",
         "--val-limit", "2000", "--sweep", "20,30,40,50,60", "--no-shift", "--threads", "2"),
        ("unit", "--model", "tiny-cnn", *FM, "--quick", "--train-limit", "2000", "--val-limit", "500",
         "--sweep", "30", "--no-shift", "--threads", "1"),
        (("unit", "dense"), ("unit", "magnitude"), ("unit", "fatrelu")),
        "UnIT on the UnIT paper's MNIST network against magnitude pruning and FATReLU"),
    Job("ela-resnet56", "ela",
        ("ela", "--model", "resnet56", *FM, "--epochs", "4", "--train-limit", "2000", "--threads", "2"),
        None, (("ela", "mrla-b"), ("ela", "mrla-l"), ("ela", "resnet")),
        "ELA on ResNet-56, where there are 15 removable attention layers"),
    compress_job("0.15", "AdaLayerNet at 15 % of the dense file against uniform bits"),
    compress_job("0.06", "AdaLayerNet at 6 % of the dense file against uniform bits", quick=False),
    compress_job("0.08", "AdaLayerNet at 8 % of the dense file against uniform bits", quick=False),
    lwac_job("resnet56", quick=False),
)


def _bases_of(argv: tuple[str, ...]) -> list[str]:
    return [b for b in map(token_base, argv) if b is not None]


def job_argv(job: Job, seed: int, out: Path, quick: bool, device: str = "cpu",
             root: Path | None = None) -> list[str]:
    """The command line of ``job`` for ``seed``; a shared base's token becomes the checkpoint that
    ``layerwise train`` wrote in ``ROOT/base-MODEL/seed<k>/``."""
    argv = []
    for a in (job.quick_argv if quick else job.argv):
        if token_base(a) is not None:
            a = str((root or out.parent.parent) / BASES[token_base(a)].key / f"seed{seed}" / "checkpoint.pt")
        argv.append(a)
    return [*argv, "--seed", str(seed), "--out", str(out), "--device", device]


def _done(folder: Path) -> dict | None:
    marker = folder / "bench.json"
    if not (marker.is_file() and (folder / "results.json").is_file()):
        return None
    try:
        return json.loads(marker.read_text())
    except (OSError, ValueError):
        return None


def _run_one(parser, job: Job, seed: int, out: Path, quick: bool, device: str, progress,
             records: list[dict]) -> None:
    """Run ``job`` for ``seed`` unless it already finished (its shared bases first)."""
    argv_ = job.quick_argv if quick else job.argv
    for name in _bases_of(argv_):
        _run_one(parser, BASES[name], seed, out, quick, device, progress, records)
    folder = out / job.key / f"seed{seed}"
    if any(r["job"] == job.key and r["seed"] == seed for r in records):
        return                                   # a base already seen in this call
    done = _done(folder)
    if done is not None and done.get("quick") == quick:
        log.info("bench: %s seed %d already done (%.0f s), skipped", job.key, seed, done["seconds"])
        records.append({**done, "skipped": True})
        return
    argv = job_argv(job, seed, folder, quick, device, root=out)
    log.info("bench: layerwise %s", " ".join(argv))
    load0 = list(os.getloadavg())
    start = time.perf_counter()
    cpu0 = time.process_time()
    run_step(parser, argv, f"bench job {job.key} seed {seed}", progress)
    rec = {"job": job.key, "seed": seed, "quick": quick, "argv": ["layerwise", *argv],
           "seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu0,
           "load_average_before": load0, "load_average": list(os.getloadavg()), "commit": _commit()}
    atomic_write_json(folder / "bench.json", rec)
    records.append(rec)


def run_jobs(out: Path, seeds: list[int], *, quick: bool = False, only: list[str] | None = None,
             device: str = "cpu", progress=None) -> list[dict]:
    """Run every job for every seed that has not finished yet (each job's shared base model
    first); returns one record per run."""
    from ..cli import build_parser   # the same parser a user types into

    parser = build_parser()
    records: list[dict] = []
    for job in JOBS:
        if only and job.key not in only and job.method not in only:
            continue
        if quick and job.quick_argv is None:
            log.info("bench: %s is not part of --quick", job.key)
            continue
        for seed in seeds:
            _run_one(parser, job, seed, out, quick, device, progress, records)
    return records


def _commit() -> str | None:
    """The git commit of the code that ran (None outside a git checkout)."""
    import subprocess
    try:
        root = Path(__file__).resolve().parents[3]
        return subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


# The cost each method trades accuracy for, read from one seed's results: (label, function of the
# variant and the variants of the same run by name). Ratios are within one run (interleaved timing).
def _ratio(num, den):
    return None if num is None or not den else num / den


def _lat(v: dict):
    return (v.get("latency_ms") or {}).get("median")


COSTS = {
    "unit": ("executed MACs / all MACs (common zero-skip basis)",
             lambda v, by: _ratio(v.get("macs_executed"), v.get("macs"))),
    "compress": ("packed size / dense fp32 file",
                 lambda v, by: _ratio(v.get("size_bytes"), by.get("dense", {}).get("size_bytes"))),
    "lwac": ("batch-1 latency / dense (median, interleaved)",
             lambda v, by: _ratio(_lat(v), _lat(by.get("dense", {})))),
    "ela": ("training epoch time / MRLA-B (median)",
            lambda v, by: _ratio((v.get("extra") or {}).get("epoch_time_s"),
                                 (by.get("mrla-b", {}).get("extra") or {}).get("epoch_time_s"))),
}


def _costs(method: str, per_seed: list[dict]) -> dict[str, list]:
    """Per variant name, its cost (see ``COSTS``) in each seed's run."""
    if method not in COSTS:
        return {}
    fn = COSTS[method][1]
    out: dict[str, list] = {}
    for r in per_seed:
        by = {v["name"]: v for v in r["variants"]}
        for name, v in by.items():
            out.setdefault(name, []).append(fn(v, by))
    return out


def _base_records(out: Path, seeds: list[int]) -> list[dict]:
    from ..results import read_results
    bases = []
    for job in BASES.values():
        rows = []
        for s in seeds:
            folder = out / job.key / f"seed{s}"
            mark = _done(folder)
            if mark is None:
                continue
            v = read_results(folder)["variants"][0]
            rows.append({"seed": s, "accuracy": v.get("accuracy"), "seconds": mark["seconds"],
                         "command": " ".join(mark["argv"])})
        if rows:
            bases.append({"key": job.key, "what": job.what, "runs": rows})
    return bases


def summarize(out: Path, seeds: list[int], *, only: list[str] | None = None) -> dict:
    """Combine each job's finished seeds (schema /2) and write ``summary.json`` and ``summary.md``.

    A job with only some seeds finished is summarised over those (its ``seeds`` says which)."""
    from ..results import combine_seeds, read_results, write_results

    jobs, not_run = [], []
    for job in JOBS:
        if only and job.key not in only and job.method not in only:
            continue
        done_seeds = [s for s in seeds if _done(out / job.key / f"seed{s}")]
        if not done_seeds:
            not_run.append(job.key)
            continue
        folders = [out / job.key / f"seed{s}" for s in done_seeds]
        per_seed = [read_results(f) for f in folders]
        combined = combine_seeds(per_seed, compare=list(job.compare), common_only=True)
        write_results(out / job.key, combined)
        marks = [_done(f) for f in folders]
        doc = combined.to_dict()
        costs = _costs(job.method, per_seed)
        variants = [{k: v.get(k) for k in ("name", "accuracy", "accuracy_std", "accuracy_ci", "macs",
                                           "macs_executed", "size_bytes", "latency_ms")}
                    | {"seeds": [{"seed": s["seed"], "accuracy": s["accuracy"]} for s in v.get("seeds") or []],
                       "cost_per_seed": costs.get(v["name"])}
                    for v in doc["variants"]]
        jobs.append({"key": job.key, "method": job.method, "what": job.what, "seeds": done_seeds,
                     "commits": [m.get("commit") for m in marks],
                     "cost_label": COSTS[job.method][0] if job.method in COSTS else None,
                     "commands": [" ".join(m["argv"]) for m in marks],
                     "seconds": [m["seconds"] for m in marks], "quick": marks[0]["quick"],
                     "load_average": [m.get("load_average") for m in marks],
                     "variants": variants, "comparisons": list(doc.get("comparisons") or []),
                     "dataset": doc["dataset"], "model": doc["model"]})
    ran_at = sorted({c for j in jobs for c in j["commits"] if c})
    bases = _base_records(out, seeds)
    seconds = sum(sum(j["seconds"]) for j in jobs) + sum(r["seconds"] for b in bases for r in b["runs"])
    summary = {"schema": "layerwise.bench/1", "seeds": list(seeds), "jobs": jobs, "not_run": not_run,
               "run_seconds": seconds, "bases": bases, "commit": ", ".join(ran_at) or None,
               "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()}}
    atomic_write_json(out / "summary.json", summary)
    atomic_write_text(out / "summary.md", readme_section(summary) + "\n")
    return summary


def _pct(x: float) -> str:
    return f"{100 * x:.2f}"


def _cost_cells(v: dict) -> str:
    vals = [c for c in (v.get("cost_per_seed") or []) if c is not None]
    if not vals:
        return "-"
    mean = sum(vals) / len(vals)
    return f"{mean:.3f}" + (f" ({', '.join(f'{c:.3f}' for c in vals)})" if len(vals) > 1 else "")


def _budget_of(key: str) -> float | None:
    """0.10 for ``compress-resnet20-b0.10``; None for a job that is not a compress budget."""
    head, _, tail = key.rpartition("-b")
    try:
        return float(tail) if head.startswith("compress") else None
    except ValueError:
        return None


def _verdict(c: dict) -> str:
    """wins / tie / loses: one paired comparison of adalayer against a rival."""
    if not c["measurable"]:
        return "tie"
    return "wins" if c["difference"] > 0 else "loses"


def _call(c: dict) -> str:
    """The comparison as a table cell: its verdict (wins in bold) and the difference in pt."""
    v = _verdict(c)
    return f"{'**wins**' if v == 'wins' else v} ({100 * c['difference']:+.2f})"


def budget_table(summary: dict) -> list[str]:
    """AdaLayerNet against each rival at every finished budget: where it wins, ties and loses, from
    the paired comparisons (pt of test accuracy, adalayer minus the rival; a tie is a difference
    that is not measurable: a paired interval that holds zero, or McNemar p >= 0.05). Quick runs
    are left out. Empty when fewer than two budgets finished."""
    # smoke runs (--quick) are no result to compare; a job without an adalayer row has nothing to say
    jobs = sorted(((b, j) for j in summary["jobs"] if (b := _budget_of(j["key"])) is not None
                   and not j.get("quick") and any(v["name"] == "adalayer" and v.get("accuracy") is not None
                                                  for v in j["variants"])), key=lambda t: t[0])
    if len(jobs) < 2:
        return []
    # the rivals, dense first (the drop); adalayer's own int8 execution is not a rival
    others = list(dict.fromkeys(c["b"] for _, j in jobs for c in j["comparisons"]
                                if c["a"] == "adalayer" and not c["b"].startswith("adalayer")))
    rivals = [r for r in others if r != "dense"]
    columns = (["dense"] if "dense" in others else []) + rivals
    lines = ["**AdaLayerNet across budgets** (from the compress jobs below; each cell: adalayer against dense "
             "or a rival on the same test images, pooled over the seeds that finished: wins or loses where "
             "the difference is measurable (paired 95 % interval excludes zero and McNemar p < 0.05), else "
             "tie; the difference in pt):", "",
             "| budget | seeds | adalayer % | " + " | ".join(columns) + " |",
             "|---|---|---|" + "---|" * len(columns)]
    for budget, j in jobs:
        ada = next(v for v in j["variants"] if v["name"] == "adalayer")
        cells = {c["b"]: _call(c) for c in j["comparisons"] if c["a"] == "adalayer"}
        lines.append(f"| {budget:.2f} | {len(j['seeds'])} | {_pct(ada['accuracy'])} | "
                     + " | ".join(cells.get(r, "-") for r in columns) + " |")
    calls = [_verdict(c) for _, j in jobs for c in j["comparisons"]
             if c["a"] == "adalayer" and c["b"] in rivals]
    def n(word: str, plural: str, k: int) -> str:
        return f"{k} {word if k == 1 else plural}"

    lines += ["", f"Against the rivals: {n('win', 'wins', calls.count('wins'))}, "
              f"{n('tie', 'ties', calls.count('tie'))} and {n('loss', 'losses', calls.count('loses'))} of "
              f"AdaLayerNet in {len(calls)} paired comparisons."]
    larger = {}   # rivals whose file is not at the budget (static int8 is 8 bits whatever the budget)
    for budget, j in jobs:
        for v in j["variants"]:
            sizes = [c for c in v.get("cost_per_seed") or [] if c is not None]
            if v["name"] in rivals and sizes and sum(sizes) / len(sizes) > 1.01 * budget:
                larger.setdefault(v["name"], []).append(f"{sum(sizes) / len(sizes):.3f} at {budget:.2f}")
    if larger:
        lines[-1] += " Not at the budget's size: " + "; ".join(
            f"{k} ({', '.join(w)} of the dense file)" for k, w in larger.items()) + "."
    lines.append("")
    return lines


def readme_section(summary: dict) -> str:
    """The README's results section for ``summary`` (deterministic: the same summary, the same text)."""
    seeds = summary["seeds"]
    commit = f", code at commit {summary['commit']}" if summary.get("commit") else ""   # the commits the runs recorded
    lines = [README_BEGIN, "",
             f"Fashion-MNIST, full 10,000-image test split, seeds {', '.join(map(str, seeds))}; "
             f"{summary['machine']['cores']} cores ({summary['machine']['cpu']}){commit}. Accuracy: mean ± std "
             "over seeds, then the 95 % Wilson interval on the pooled test predictions. Differences: paired "
             "on the same images (bootstrap 95 % CI, exact McNemar). Cost: the mean over seeds, each seed's "
             "value in brackets.", ""]
    if not summary["jobs"]:
        lines += ["No finished bench job yet: run `layerwise bench`.", "", README_END]
        return "\n".join(lines)
    if summary.get("run_seconds") is not None:
        lines += [f"Run time: {summary['run_seconds'] / 60:.0f} min in all, the sum of the runs listed below, "
                  "each under the load average it states."
                  + (f" Not run yet: {', '.join(summary['not_run'])}." if summary.get("not_run") else ""), ""]
    lines += budget_table(summary)
    for b in summary.get("bases") or []:
        runs = b["runs"]
        lines += [f"**{b['key']}**: {b['what']}: `{runs[0]['command']}`; test accuracy "
                  + ", ".join(f"{_pct(r['accuracy'])} % (seed {r['seed']}, {r['seconds']:.0f} s)" for r in runs)
                  + ".", ""]
    for job in summary["jobs"]:
        quick = " (--quick: a smoke run, not a result)" if job["quick"] else ""
        job_seeds = job.get("seeds") or seeds
        partial = (f" Only seed{'s' if len(job_seeds) > 1 else ''} {', '.join(map(str, job_seeds))} finished."
                   if list(job_seeds) != list(seeds) else "")
        cost = job.get("cost_label")
        lines += [f"**{job['key']}**{quick}: {job['what']}.{partial}", "",
                  f"`{job['commands'][0]}` (one run per seed: "
                  + ", ".join(f"{s:.0f} s" for s in job["seconds"])
                  + (f"; 1-min load average at the end of each: "
                     + ", ".join(f"{la[0]:.1f}" for la in job["load_average"] if la)
                     if any(job.get("load_average") or []) else "") + ")", "",
                  "| variant | accuracy % (mean ± std) | per seed | 95 % CI (pooled) |"
                  + (f" {cost} |" if cost else ""),
                  "|---|---|---|---|" + ("---|" if cost else "")]
        for v in job["variants"]:
            ci = v.get("accuracy_ci") or {}
            per = ", ".join(_pct(s["accuracy"]) for s in v.get("seeds") or [])
            std = v.get("accuracy_std")
            lines.append(f"| {v['name']} | {_pct(v['accuracy'])}"
                         + (f" ± {_pct(std)}" if std is not None else "")
                         + f" | {per} | "
                         + (f"{_pct(ci['low'])}-{_pct(ci['high'])}" if ci else "-") + " |"
                         + (f" {_cost_cells(v)} |" if cost else ""))
        if job["comparisons"]:
            lines.append("")
            for c in job["comparisons"]:
                lines.append(f"- {c['verdict']}")
        lines.append("")
    lines.append(README_END)
    return "\n".join(lines)


def update_readme(readme: Path, summary: dict) -> bool:
    """Replace the README's bench section with :func:`readme_section`; True when it changed."""
    text = readme.read_text()
    if README_BEGIN not in text or README_END not in text:
        raise LayerwiseError(f"{readme} has no bench section: add the two marker lines {README_BEGIN!r} and "
                             f"{README_END!r} where the results should go")
    head, rest = text.split(README_BEGIN, 1)
    _, tail = rest.split(README_END, 1)
    new = head + readme_section(summary) + tail
    if new != text:
        atomic_write_text(readme, new)
    return new != text


def add_arguments(p) -> None:
    p.add_argument("--out", type=Path, default=Path("runs/bench"), help="folder for every job (default runs/bench)")
    p.add_argument("--seeds", type=int, nargs="+", default=None,
                   help="seeds to run every job with (default 0 1 2; with --quick, 0)")
    p.add_argument("--quick", action="store_true",
                   help="tiny settings for every job and one seed: a smoke run of the pipeline, not results")
    p.add_argument("--only", nargs="+", help="run only these jobs or methods (e.g. unit ela)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--summary-only", action="store_true",
                   help="run nothing: combine the seeds that finished and write the summary (e.g. of a bench "
                        "cut short)")
    p.add_argument("--readme", type=Path, metavar="SUMMARY",
                   help="write README.md's results section from this summary.json and stop")


def run_command(args, progress=None) -> CommandReport:
    if args.readme is not None:
        summary = json.loads(Path(args.readme).read_text())
        changed = update_readme(Path("README.md"), summary)
        return CommandReport(f"README.md results section {'rewritten' if changed else 'already up to date'} "
                             f"from {args.readme}")
    start = time.perf_counter()
    seeds = args.seeds if args.seeds is not None else ([0] if args.quick else [0, 1, 2])
    records = [] if args.summary_only else run_jobs(args.out, seeds, quick=args.quick, only=args.only,
                                                     device=args.device, progress=progress)
    summary = summarize(args.out, seeds, only=args.only)
    ran = [r for r in records if not r.get("skipped")]
    lines = [f"bench: {len(ran)} runs now, {len(records) - len(ran)} already done; "
             f"{time.perf_counter() - start:.0f} s", "",
             (args.out / "summary.md").read_text(), f"wrote {args.out / 'summary.json'}"]
    return CommandReport("\n".join(lines))
