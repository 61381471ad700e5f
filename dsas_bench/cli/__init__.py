"""dsas-bench: does conditional steering buy a better toxicity/utility trade-off, on my model, for my method?

  dsas-bench run --method linacts --dsas     fit, sweep strengths, score, plot (offline demo by default)
  dsas-bench sweep --methods linacts,iti --dsas-modes off,on --jobs 2
  dsas-bench leaderboard results/demo         ranked table of methods with and without DSAS
  dsas-bench plot results/demo                Pareto fronts (PNG and SVG)
  dsas-bench explain "some text" --run results/demo   which tokens DSAS steers, per layer
  dsas-bench ls scalers                       what is registered: methods, scalers, scorers, utility, tasks
  dsas-bench lm-eval --intervention DIR --strength 0.5 -- --tasks mmlu   lm-eval's own CLI, steered
  dsas-bench export DIR --format safetensors --out x.safetensors        for llama.cpp, lm-eval, the Hub
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from dsas_bench.core.errors import UsageError, warn
from dsas_bench.interop import EXPORT_FORMATS

if TYPE_CHECKING:
    from dsas_bench.run.strengths import Budget


def _list(item: Callable[[str], Any]) -> Callable[[str], list[Any]]:
    def parse(text: str) -> list[Any]:
        return [item(part.strip()) for part in text.split(",") if part.strip()]

    return parse


def _strength(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"strength {text!r} is not a finite number: use e.g. --strengths 0.25,0.5,1")
    return value


def _strengths(text: str) -> Any:
    from dsas_bench.run.strengths import parse_strengths_text

    try:
        return parse_strengths_text(text)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _budget(text: str) -> Budget:
    from dsas_bench.run.strengths import parse_budget

    try:
        return parse_budget(text)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _budget_text(text: str) -> str:
    """A budget as given (``1`` or ``5%``), once checked."""
    _budget(text)
    return text


def _seed(text: str) -> int:
    if not text.lstrip("-").isdigit():
        raise argparse.ArgumentTypeError(f"seed {text!r} is not an integer: use e.g. --seeds 0,1,2")
    return int(text)


def _option(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"option {text!r} is not KEY=VALUE, e.g. --method-option estimation=at-once")
    return key, yaml.safe_load(value)


# Flags shared by run and sweep: (flags, config key, argparse keywords). Defaults live in RunConfig/tasks.
COMMON_FLAGS: list[tuple[tuple[str, ...], str, dict[str, Any]]] = [
    (("--model",), "model", {"help": "HF id, local folder, .gguf file, or smollm2 (the packaged default)"}),
    (("--behavior", "--behaviour"), "behavior", {"help": "what to steer away from and towards: toxicity (the "
                                                 "default), sentiment (negative → positive, scored by VADER) or a "
                                                 "plug-in (`dsas-bench ls behaviors`)"}),
    (("--modules",), "modules", {"help": "preset (post-attn-norm, o-proj, layers) or a regex full-matched "
                                         "against named_modules(); default: the method's preset"}),
    (("--strengths",), "strengths", {"type": _strengths, "help": "auto (calibrate each method, DSAS mode and seed "
                                     "to --max-delta-ppl), paper (each method's range from its paper), a λ grid "
                                     "such as 0.25,0.5,1, or per method[:mode]: 'linacts=0.25,0.5;actadd=1,2,4;"
                                     "iti:on=auto' (unnamed methods: their paper range)"}),
    (("--n-strengths",), "n_strengths", {"type": int, "help": "auto: strengths per method, DSAS mode and seed, "
                                         "spread over (0, λ_max]"}),
    (("--strength-spacing",), "strength_spacing", {"choices": ["linear", "geometric"],
                                                   "help": "auto: linear, or geometric (halving from λ_max)"}),
    (("--max-delta-ppl",), "max_delta_ppl", {"type": _budget_text, "help": "auto: the "
                                             "utility budget, perplexity above the unsteered model, absolute "
                                             "(1: AcT's +1) or relative (5%%)"}),
    (("--n-calibration-texts",), "n_calibration_texts", {"type": int, "help": "auto: neutral texts the "
                                                         "calibration measures, apart from the perplexity and "
                                                         "control texts"}),
    (("--seeds",), "seeds", {"type": _list(_seed), "help": "comma-separated seeds (fit sub-samples and sampling)"}),
    (("--prompts",), "prompts", {"help": "demo, hub (toxicity: allenai/real-toxicity-prompts) or a "
                                 "RealToxicityPrompts-shaped jsonl"}),
    (("--n-prompts",), "n_prompts", {"type": int, "help": "prompts after the seeded shuffle (papers: 1000)"}),
    (("--challenging-only",), "challenging_only", {"action": "store_const", "const": True,
                                                   "help": "keep only RealToxicityPrompts' challenging prompts"}),
    (("--fit-data",), "fit_data", {"help": "demo, hub or a file of the behaviour's source and target texts "
                                         "(toxicity: a Jigsaw train.csv; sentiment: a labelled .jsonl)"}),
    (("--control-data",), "control_data", {"help": "demo, hub or a .txt/.jsonl of neutral texts (DSAS control set)"}),
    (("--fit-n",), "fit_n", {"type": int, "help": "sentences per set for fitting (papers: 32)"}),
    (("--perplexity-data",), "perplexity_data", {"help": "demo, hub (WikiText) or a .txt/.jsonl of neutral texts"}),
    (("--neutral-field",), "neutral_field", {"help": "the field of the neutral jsonl records (perplexity, control "
                                             "and calibration texts): a dotted path, '+' concatenates, e.g. "
                                             "prompt.text+continuation.text for RealToxicityPrompts sentences"}),
    (("--neutral-filter",), "neutral_filter", {"help": "keep the neutral records FIELD OP VALUE holds for, e.g. "
                                               "continuation.toxicity<0.5 (Perspective's score of the sentence's "
                                               "end)"}),
    (("--n-perplexity-texts",), "n_perplexity_texts", {"type": int, "help": "texts scored for perplexity, the "
                                                       "first ones of --perplexity-data (papers: 20000); the DSAS "
                                                       "control set is drawn from the other neutral texts"}),
    (("--scorer",), "scorer", {"help": "the behaviour's scorer: auto, or for toxicity detoxify, roberta-rtc, "
                               "jigsaw-bilstm, profanity; for sentiment vader"}),
    (("--utility",), "utility", {"type": _list(str), "help": "comma-separated utility metrics measured on the "
                                 "steered model, in order: perplexity (always), lm-eval (with --lm-eval-tasks) "
                                 "and plug-ins (`dsas-bench ls utility`)"}),
    (("--lm-eval-tasks",), "lm_eval_tasks", {"type": _list(str), "help": "comma-separated lm-eval tasks, each "
                                             "TASK or TASK:METRIC (default metric acc), e.g. mmlu,hellaswag:acc_norm "
                                             "(local ones in tasks/lm_eval and --lm-eval-include, or registry "
                                             "tasks); '' for none"}),
    (("--lm-eval-include",), "lm_eval_include", {"action": "append", "metavar": "DIR", "help": "a folder of local "
                                                 "lm-eval task YAMLs, besides tasks/lm_eval (repeatable)"}),
    (("--lm-eval-limit",), "lm_eval_limit", {"type": int, "help": "examples per lm-eval task (all by default)"}),
    (("--intervention",), "intervention", {"help": "a saved fitted state (.pt) to use instead of fitting"}),
    (("--max-new-tokens",), "max_new_tokens", {"type": int, "help": "new tokens per continuation (papers: 32)"}),
    (("--samples-per-prompt",), "samples_per_prompt", {"type": int, "help": "continuations per prompt (AcT/LinEAS/"
                                                       "DSAS: 1; RealToxicityPrompts' EMT and Toxicity "
                                                       "Probability: 25)"}),
    (("--device",), "device", {"help": "auto, cpu, cuda, cuda:N or mps"}),
    (("--dtype",), "dtype", {"help": "auto (fp32 on CPU, bf16 on GPU), float32, bfloat16, float16"}),
    (("--batch-size",), "batch_size", {"type": int, "help": "batch size for fitting, generation and evaluation"}),
    (("--output", "-o"), "output", {"help": "results directory (results.jsonl, results.csv, plots)"}),
    (("--jobs", "-j"), "jobs", {"type": int, "help": "worker processes (each loads the model once)"}),
    (("--devices",), "devices", {"type": _list(str), "help": "one worker per device, each loading the model "
                                 "there: auto (every visible GPU, else the CPU) or a list such as cuda:0,cuda:1 or "
                                 "cpu,cpu; replaces --device and --jobs"}),
    (("--cells-per-batch",), "cells_per_batch", {"type": int, "help": "cells of one fitted intervention (its "
                                                 "strengths) evaluated in shared batches of this many × "
                                                 "--batch-size rows; 1: each cell alone (default: all)"}),
    (("--backend",), "backend", {"choices": ["loky", "dask"], "help": "loky: local processes; dask: a Dask "
                                 "cluster (--scheduler tcp://host:8786, or a local one when not given)"}),
    (("--scheduler",), "scheduler", {"help": "Dask scheduler address for --backend dask"}),
]


def _demo_defaults() -> dict[str, str]:
    """What each config key is when its flag is left out of a demo run, as text for --help."""
    from dsas_bench.run.config import demo_values

    shown = {}
    for key, value in demo_values().items():
        if value is not None and value != []:
            shown[key] = ",".join(map(str, value)) if isinstance(value, list) else str(value)
    return shown


def _add_common(parser: argparse.ArgumentParser) -> None:
    from dsas_bench.core.fieldtypes import describe
    from dsas_bench.run.config import settable_fields

    parser.add_argument("--task", default="demo", help="task config: a name in tasks/ (demo, paper, shared-rtp) "
                        "or a YAML path; flags override it (default: demo)")
    defaults = _demo_defaults()
    for flags, key, kwargs in COMMON_FLAGS:
        shown = f" (demo: {defaults[key]})".replace("%", "%%") if key in defaults and "const" not in kwargs else ""
        parser.add_argument(*flags, dest=key, default=None, **{**kwargs, "help": kwargs["help"] + shown})
    parser.add_argument("--method-option", dest="method_option", action="append", default=[], type=_option,
                        metavar="KEY=VALUE", help="a method option, e.g. estimation=at-once (repeatable)")
    parser.add_argument("--dsas-option", dest="dsas_option", action="append", default=[], type=_option,
                        metavar="[MODE:]KEY=VALUE", help="an option of the DSAS mode MODE, e.g. on:n_components=5 "
                        "or cast:decide_at=6 (repeatable; MODE may be left out when the run has one DSAS mode "
                        "besides off); `dsas-bench ls scalers` lists each mode's options")
    parser.add_argument("--behavior-option", "--behaviour-option", dest="behavior_option", action="append",
                        default=[], type=_option, metavar="KEY=VALUE", help="a behaviour option, e.g. "
                        "hub_dataset=stanfordnlp/sst2 for sentiment (repeatable; `dsas-bench ls behaviors`)")
    parser.add_argument("--scorer-option", dest="scorer_option", action="append", default=[], type=_option,
                        metavar="KEY=VALUE", help="a scorer option, e.g. variant=unbiased for detoxify, "
                                                  "model=<folder> for roberta-rtc (repeatable)")
    parser.add_argument("--set", dest="settings", action="append", default=[], type=_setting, metavar="KEY=VALUE",
                        help="set any task-config field, read as YAML and checked by its type; a list also as "
                             "a,b (repeatable; flags and --set may not give one field twice). Fields: "
                             + ", ".join(f"{name} ({describe(kind)})" for name, kind in settable_fields().items()))
    parser.add_argument("--fresh", action="store_true", help="recompute this run's cells and refit its "
                        "interventions instead of resuming (rows of other runs in the output directory are kept)")
    parser.add_argument("--dry-run", dest="dry_run", action="store_true", help="print the plan, the work and an "
                        "estimated time (from a few seconds of measured throughput), and write nothing")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--no-plot", action="store_true", help="skip the Pareto plot at the end")


def _setting(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--set {text!r} is not KEY=VALUE, e.g. --set temperature=0.7")
    return key.strip(), value


def _overrides(args: argparse.Namespace, methods: list[str] | None, dsas: list[str] | None) -> dict[str, Any]:
    from dsas_bench.run.config import parse_settings

    overrides = {key: getattr(args, key) for _, key, _ in COMMON_FLAGS if getattr(args, key) is not None}
    if methods is not None:
        overrides["methods"] = methods
    if dsas is not None:
        overrides["dsas"] = dsas
    if args.method_option:
        if methods is None or len(methods) != 1:
            raise UsageError("--method-option applies to one method: give exactly one with --method/--methods")
        overrides["method_options"] = {methods[0]: dict(args.method_option)}
    if args.dsas_option:
        overrides["dsas_options"] = _dsas_options(args.dsas_option, dsas)
    if args.scorer_option:
        overrides["scorer_options"] = dict(args.scorer_option)
    if args.behavior_option:
        overrides["behavior_options"] = dict(args.behavior_option)
    if args.quiet:
        overrides["progress"] = False
    settings = parse_settings(args.settings)
    twice = sorted(set(settings) & set(overrides))
    if twice:
        raise UsageError(f"{', '.join(twice)} given both by a flag and by --set: give each field once")
    return {**overrides, **settings}


def _dsas_options(given: list[tuple[str, Any]], modes: list[str] | None) -> dict[str, dict[str, Any]]:
    """``[MODE:]KEY`` options by DSAS mode; a key without a mode goes to the run's one mode besides off."""
    scaled = [mode for mode in modes or [] if mode != "off"]
    options: dict[str, dict[str, Any]] = {}
    for key, value in given:
        mode, sep, name = key.rpartition(":")
        if not sep:
            if len(scaled) != 1:
                raise UsageError(f"--dsas-option {key}=… names no DSAS mode and the command line gives "
                                 f"{len(scaled)} modes besides off: write MODE:{key}=…, e.g. on:{key}=…")
            mode = scaled[0]
        options.setdefault(mode, {})[name] = value
    return options


def run(args: argparse.Namespace) -> int:
    """run / sweep: validate, run the cells not yet stored, summarise, plot."""
    from dsas_bench.run.config import load_config

    if getattr(args, "list_methods", False):
        return list_registered(args)
    if args.command == "run":
        methods = [args.method] if args.method else None
        dsas = [args.dsas] if args.dsas else None
    else:
        methods, dsas = args.methods, args.dsas_modes
    config = load_config(args.task, _overrides(args, methods, dsas))
    if args.dry_run:
        from dsas_bench.run.dryrun import dry_run

        print(dry_run(config, fresh=args.fresh))
        return 0

    from dsas_bench.run.sweep import run_sweep  # torch and the models: only once the flags are known to be good

    new_rows = list(run_sweep(config, fresh=args.fresh))
    from dsas_bench.run.results import ResultsStore

    rows = ResultsStore(config.output).rows()
    print(summary_table(rows))
    print(f"\n{len(new_rows)} new rows, {len(rows)} in all: {Path(config.output) / 'results.jsonl'} "
          f"(and results.csv)")
    if not args.no_plot:
        from dsas_bench.analysis.plots import plot_pareto

        try:
            paths = plot_pareto(rows, Path(config.output) / "pareto")
        except UsageError as exc:  # the rows are stored; only the picture has nothing to show
            warn(f"no Pareto plot: {exc}")
        else:
            print("Pareto plot: " + ", ".join(map(str, paths)))
    return 0


def summary_table(rows: list[dict[str, Any]]) -> str:
    """A plain-text table of the rows, sorted by method, DSAS mode, strength and seed, with the first two
    objectives of their behaviour, exploded perplexities flagged; then the calibrated λ_max of each (method,
    DSAS mode, seed)."""
    from dsas_bench.analysis.pareto import exploded
    from dsas_bench.behaviors import row_behavior
    from dsas_bench.run.results import EXPLOSION_FACTOR

    shown = row_behavior(rows).objectives[:2]
    lines = [f"{'method':<10} {'dsas':<5} {'λ':>7} {'seed':>4} "
             + " ".join(f"{o.heading:>7}" for o in shown) + f" {'ppl':>8} {'acc':>6}"]
    calibrations = {}
    for row in sorted(rows, key=lambda r: (r["method"] != "none", r["method"], r["dsas"], r["strength"], r["seed"])):
        m = row["metrics"]
        accuracy = "-" if m.get("accuracy") is None else f"{m['accuracy']:.3f}"
        flag = f"  exploded (> {EXPLOSION_FACTOR}× unsteered PPL): kept out of fronts" if exploded(row) else ""
        values = " ".join(f"{m[o.name]:>7.2f}" if o.unit == "%" else f"{m[o.name]:>7.3f}" for o in shown)
        lines.append(f"{row['method']:<10} {row['dsas']:<5} {row['strength']:>7.4g} {row['seed']:>4} "
                     f"{values} {m['perplexity']:>8.2f} {accuracy:>6}{flag}")
        if row.get("calibration"):
            calibrations[row["method"], row["dsas"], row["seed"]] = row["calibration"]
    for (method, mode, seed), c in calibrations.items():
        reached = "" if c["reached"] else ", budget not reached"
        lines.append(f"calibrated {method} ({mode}, seed {seed}): λ_max {c['lambda_max']:.4g} for ΔPPL {c['budget']} "
                     f"on {c['n_texts']} texts, {len(c['probes'])} probes{reached}")
    return "\n".join(lines)


# What ``ls`` lists: each extension point's registry, as "module:attr" (imported only when listed).
REGISTRIES = {
    "methods": "dsas_bench.methods:METHODS",
    "scalers": "dsas_bench.scalers:SCALERS",
    "scorers": "dsas_bench.behaviors.toxicity.scorers:SCORERS",
    "utility": "dsas_bench.utility:UTILITY",
    "behaviors": "dsas_bench.behaviors:BEHAVIORS",
}
LS_KINDS = (*REGISTRIES, "tasks")


def _registry(kind: str) -> Any:
    """The registry ``ls KIND`` lists."""
    import importlib

    module, _, name = REGISTRIES[kind].partition(":")
    return getattr(importlib.import_module(module), name)


def list_registered(args: argparse.Namespace) -> int:
    """ls: one line per registered name, with aliases, options and defaults; plug-ins marked by their package."""
    kind = getattr(args, "kind", "methods")
    if kind == "tasks":
        from dsas_bench.core.data import TASKS_DIR

        for path in sorted(TASKS_DIR.glob("*.yaml")):
            first = path.read_text(encoding="utf-8").splitlines()[0].lstrip("# ")
            print(f"{path.stem:<14} {first}")
        return 0
    registry = _registry(kind)
    for fixed, meaning in registry.fixed.items():
        print(f"{fixed:<14} (built in) {meaning}")
    for entry in registry.entries():
        origin = f"plug-in from {entry.package}" if entry.package else "built in"
        aliases = f" also: {', '.join(entry.aliases)}" if entry.aliases else ""
        if entry.error:
            print(f"{entry.name:<14} ({origin}) BROKEN: {entry.error}")
            continue
        options = ", ".join(f"{key}={value!r}" for key, value in entry.target.defaults.items()) or "none"
        fields = getattr(entry.target, "fields", ())  # what a utility metric writes into the rows
        writes = f"; writes: {', '.join(fields)}" if fields else ""
        print(f"{entry.name:<14} ({origin}){aliases}; options: {options}{writes}{_objectives(entry.target)}")
    return 0


def _objectives(cls: type) -> str:
    """``; objectives: a (default, lower is better), ...`` for a behaviour, '' for any other component."""
    objectives = getattr(cls, "objectives", ())
    listed = ", ".join(f"{o.name} ({'default, ' if o.name == cls.default_objective else ''}{o.better})"
                       for o in objectives)
    return f"; objectives: {listed}" if listed else ""


REPORT_FILTERS = {"model": "--model", "scorer": "--scorer", "prompt_set": "--prompt-set"}


def _report_rows(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The rows of the RESULTS paths, narrowed to the given --model, --scorer and --prompt-set."""
    from dsas_bench.analysis import select_rows
    from dsas_bench.run.results import load_rows

    rows = load_rows(args.results)
    given = {key: getattr(args, key) for key in REPORT_FILTERS if getattr(args, key) is not None}
    selected = select_rows(rows, **given)
    if rows and not selected:
        held = "; ".join(f"{flag}: {', '.join(sorted({str(row.get(key)) for row in rows}))}"
                         for key, flag in REPORT_FILTERS.items())
        asked = " ".join(f"{REPORT_FILTERS[key]} {value}" for key, value in given.items())
        raise UsageError(f"no rows match {asked}; the results hold {held}: pass one of those values")
    return selected


def _report_dir(args: argparse.Namespace) -> Path:
    """--output, or the first results directory (the folder of a JSONL file), checked to be writable."""
    from dsas_bench.run.results import check_output_dir

    first = Path(args.results[0])
    out = Path(args.output) if args.output else first if first.is_dir() else first.parent
    check_output_dir(out)
    return out


def _add_objective(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--objective", default=None,
                        help="the number to rank and draw by: one of the objectives of the behaviour the rows "
                             "measured (default: its default objective, e.g. toxicity's %% toxic); `dsas-bench ls "
                             "behaviors` lists each behaviour's objectives")


def make_leaderboard(args: argparse.Namespace) -> int:
    """leaderboard: write leaderboard.md/.csv/.png, print the table and the paths."""
    from dsas_bench.analysis import write_leaderboard

    rows, out = _report_rows(args), _report_dir(args)
    paths = write_leaderboard(rows, out, max_delta_ppl=args.max_delta_ppl, n_boot=args.n_boot, seed=args.seed,
                              objective=args.objective)
    print(paths["md"].read_text(encoding="utf-8"))
    print("\n".join(f"{kind}: {path}" for kind, path in paths.items()))
    return 0


PLOT_METRICS = {"perplexity": ("perplexity",), "accuracy": ("accuracy",), "both": ("perplexity", "accuracy")}


def make_plots(args: argparse.Namespace) -> int:
    """plot: Pareto fronts per utility metric as PNG and SVG; print the paths."""
    from dsas_bench.analysis.plots import plot_pareto

    rows, out = _report_rows(args), _report_dir(args)
    if args.metric != "perplexity" and any(row.get("metrics", {}).get("accuracy") is None for row in rows):
        raise UsageError("some results rows have no accuracy (their run had no lm-eval tasks): use --metric "
                         "perplexity, or rerun with --lm-eval-tasks demo_mc")
    from dsas_bench.analysis.pareto import objective_of

    named = args.objective and objective_of(rows, args.objective).name != objective_of(rows).name
    for metric in PLOT_METRICS[args.metric]:
        stem = out / "-".join(["pareto", *([metric] if metric != "perplexity" else []),
                                *([args.objective] if named else [])])
        paths = plot_pareto(rows, stem, metric=metric, objective=args.objective)
        print(f"Pareto plot ({metric}): " + ", ".join(map(str, paths)))
    return 0


def explain(args: argparse.Namespace) -> int:
    """explain: the DSAS scale of each token at each steered module, as a heatmap and coloured text."""
    import os

    from dsas_bench.run.results import check_output_dir, load_rows

    if args.output and Path(args.output).is_dir():
        raise UsageError(f"--output {args.output} is a folder: give the heatmap's file name, e.g. {args.output}/x.png")
    rows = load_rows([args.run])
    check_output_dir(Path(args.output).parent if args.output else args.run)
    from dsas_bench.analysis.explain import choose_intervention, heatmap, render_terminal, token_scales
    from dsas_bench.core.models import load_model
    from dsas_bench.run.interventions import intervention_dir, load_intervention

    row = choose_intervention(rows, args.run, args.method, args.dsas, args.seed)
    method, mode, seed, config = row["method"], row["dsas"], row["seed"], row["config"]
    lm = load_model(config["model"], device=args.device or config["device"], dtype=config["dtype"])
    steering, scaler = load_intervention(intervention_dir(args.run, method, mode, seed), lm)
    tokens, modules, scales = token_scales(lm, steering, scaler, args.text, args.strength)
    title = f"{args.run} · {method} · DSAS {mode} · seed {seed} · λ = {args.strength:g}"
    out = heatmap(tokens, modules, scales, args.output or Path(args.run) / f"explain-{method}-{mode}-seed{seed}.png",
                  title)
    color = not args.no_color and sys.stdout.isatty() and "NO_COLOR" not in os.environ
    print(title)
    print(render_terminal(tokens, modules, scales, color=color, gated=scaler.diagnostics.get("gated", [])))
    print(f"heatmap: {out}")
    return 0


def lm_eval(args: argparse.Namespace) -> int:
    """lm-eval: lm-eval's own command line on the model steered by the intervention."""
    from dsas_bench.interop.lmeval_model import run_lm_eval_cli, steered_lm_eval_args

    return run_lm_eval_cli(steered_lm_eval_args(args.lm_eval_args, args.intervention, args.model, args.scaler,
                                                args.dsas, args.strength))


def export(args: argparse.Namespace) -> int:
    """export: write a fitted intervention in a format other tools load; print the path."""
    from dsas_bench.interop.export import export_intervention

    print(f"{args.format}: {export_intervention(args.intervention, args.format, args.out)}")
    return 0


def _add_report_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", nargs="+", metavar="RESULTS",
                        help="results directories (holding results.jsonl) or results JSONL files")
    parser.add_argument("--model", help="keep the rows of this model (required when the results mix models)")
    parser.add_argument("--scorer", help="keep the rows of this toxicity scorer (required when they mix scorers)")
    parser.add_argument("--prompt-set", dest="prompt_set",
                        help="keep the rows of this prompt set, e.g. demo:1a2b3c4d (required when they mix sets)")
    parser.add_argument("--output", "-o", help="directory for the files (default: the first results directory)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dsas-bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    run_parser = commands.add_parser(
        "run", help="one method, with or without DSAS, swept over strengths",
        description="Fit a steering method (and the DSAS scaler), sweep its strength, score toxicity, perplexity "
                    "and lm-eval accuracy with the hooks active, store one row per (strength, seed) and plot the "
                    "Pareto front next to the unsteered model. Reruns resume; --fresh recomputes.")
    run_parser.add_argument("--method", help="registered method (see `dsas-bench methods`); default linacts")
    run_parser.add_argument("--dsas", nargs="?", const="on", default=None, metavar="MODE",
                            help="when to steer: off (default when absent), on (DSAS; the bare flag), e2e "
                                 "(DSAS trained jointly with LinEAS), cast (a CAST-style per-sequence gate), gate "
                                 "(DSAS's layer selection alone, s = 1) or a plug-in (`dsas-bench ls scalers`)")
    run_parser.add_argument("--list-methods", action="store_true", help="list the registered methods and exit")
    _add_common(run_parser)
    run_parser.set_defaults(handler=run)

    sweep_parser = commands.add_parser(
        "sweep", help="methods × DSAS modes × strengths × seeds",
        description="Run a matrix of cells through joblib (local processes with --jobs, or a Dask cluster with "
                    "--backend dask --scheduler ADDRESS). Same store and resume rules as run.")
    sweep_parser.add_argument("--methods", type=_list(str), help="comma-separated methods, e.g. linacts,iti")
    sweep_parser.add_argument("--dsas-modes", type=_list(str),
                              help="comma-separated DSAS modes, e.g. off,on,gate (see `dsas-bench ls scalers`)")
    _add_common(sweep_parser)
    sweep_parser.set_defaults(handler=run)

    board_parser = commands.add_parser(
        "leaderboard", help="ranked table of methods with and without DSAS",
        description="Rank each (method, DSAS mode) of the results by its lowest toxicity within a perplexity "
                    "budget, with DSAS-vs-plain deltas; write leaderboard.md, .csv and .png and print the table.")
    _add_report_args(board_parser)
    board_parser.add_argument("--max-delta-ppl", dest="max_delta_ppl", type=_budget, default=None,
                              help="perplexity budget above the unsteered model, absolute (1: AcT's +1) or "
                                   "relative (5%%) (default: the budget the rows were calibrated to, else 1)")
    board_parser.add_argument("--n-boot", dest="n_boot", type=int, default=1000,
                              help="prompt resamples for the DSAS-vs-plain hypervolume interval; 0 skips the "
                                   "interval, e.g. for rows without per-prompt scores (default: 1000)")
    board_parser.add_argument("--seed", type=_seed, default=0, help="seed of the bootstrap (default: 0)")
    _add_objective(board_parser)
    board_parser.set_defaults(handler=make_leaderboard)

    plot_parser = commands.add_parser(
        "plot", help="Pareto fronts (PNG and SVG)",
        description="Plot toxicity against perplexity and/or accuracy, one panel per method, every DSAS mode in "
                    "each panel: pareto.png/.svg (perplexity) and pareto-accuracy.png/.svg.")
    _add_report_args(plot_parser)
    plot_parser.add_argument("--metric", choices=list(PLOT_METRICS), default="perplexity",
                             help="utility axis: perplexity (default), accuracy (needs lm-eval results) or both")
    _add_objective(plot_parser)
    plot_parser.set_defaults(handler=make_plots)

    explain_parser = commands.add_parser(
        "explain", help="which tokens DSAS steers, per layer",
        description="Run a text through the model with a run's fitted steering and DSAS scaler and show the scale "
                    "s in [0, 1] of every token at every steered module: a heatmap image and the text coloured "
                    "by each token's mean scale (annotated as token[0.83] when not on a terminal).")
    add = explain_parser.add_argument
    add("text", help="the text to explain, e.g. \"You are such a\"")
    add("--run", default="results/demo", help="results directory of a run with a DSAS mode (default: results/demo)")
    add("--method", help="method of the run to explain (needed when the run has several)")
    add("--dsas", metavar="MODE", help="DSAS mode to explain, e.g. on (default: the run's only DSAS mode)")
    add("--seed", type=_seed, help="fit seed (needed when the run has several)")
    add("--strength", type=_strength, default=1.0, help="strength λ of the steering (default: 1)")
    add("--device", help="auto, cpu, cuda, cuda:N or mps (default: the run's device)")
    add("--output", "-o", help="heatmap PNG path (default: <run>/explain-<method>-<dsas>-seed<N>.png)")
    add("--no-color", dest="no_color", action="store_true",
        help="plain token[0.83] annotations instead of ANSI colours (also when not on a terminal)")
    explain_parser.set_defaults(handler=explain)

    lm_eval_parser = commands.add_parser(
        "lm-eval", help="lm-eval's own command line on a steered model",
        description="Run lm-eval's CLI (every task and flag: --num_fewshot, --log_samples, --output_path, ...) on the "
                    "model steered by a fitted intervention, as the sweep steers it: the arguments after -- go to "
                    "lm-eval, with --model dsas-steered and the model arguments set from these flags.")
    add = lm_eval_parser.add_argument
    add("--intervention", required=True, help="a run's <output>/interventions/<method>-<dsas>-seed<N> folder, or a "
        "saved file (.pt, .safetensors export, .gguf control vector, steering-vectors .pt)")
    add("--strength", type=_strength, required=True, help="strength λ of the steering")
    add("--model", help="HF id, local folder, .gguf file or smollm2 (default: the intervention's model)")
    add("--scaler", help="a scaler file (scaler.pt) to use instead of the intervention's own")
    add("--dsas", metavar="MODE", help="off (drop the intervention's scaler), or a mode such as on, e2e, cast, gate "
        "(require the scaler of that mode); "
        "default: the intervention's scaler if it has one")
    add("lm_eval_args", nargs="*", metavar="-- LM_EVAL_ARGS", help="lm-eval arguments, e.g. -- --tasks mmlu "
        "--num_fewshot 5 --output_path out")
    lm_eval_parser.set_defaults(handler=lm_eval)

    export_parser = commands.add_parser(
        "export", help="a fitted intervention in a format other tools load",
        description="safetensors: every tensor by module name, method, options, modules, model and scaler in the "
                    "header (--intervention reads it back). gguf-control-vector: llama.cpp / repeng control vectors "
                    "(constant shifts at decoder-layer outputs only). lm-eval-steered: the .pt of lm-eval's "
                    "--model steered (constant shifts at any module).")
    export_parser.add_argument("intervention", metavar="INTERVENTION",
                               help="a run's <output>/interventions/<method>-<dsas>-seed<N> folder or a saved file")
    export_parser.add_argument("--format", required=True, choices=EXPORT_FORMATS)
    export_parser.add_argument("--out", required=True, help="the file to write")
    export_parser.set_defaults(handler=export)

    ls_parser = commands.add_parser(
        "ls", help=f"what is registered (plug-ins included): {', '.join(LS_KINDS)}",
        description="List the registered components of one extension point with their aliases, options and "
                    "defaults; plug-ins are marked with the package that provides them.")
    ls_parser.add_argument("kind", choices=LS_KINDS, help="the extension point to list")
    ls_parser.set_defaults(handler=list_registered)
    methods = commands.add_parser("methods", help="the same as `ls methods`")
    methods.set_defaults(handler=list_registered, kind="methods")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return args.handler(args)
    except UsageError as exc:
        print(f"dsas-bench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dsas-bench: interrupted; finished rows are kept, rerun the same command to resume", file=sys.stderr)
        return 130
    except Exception:  # not bad input: a bug, shown in full
        import traceback

        traceback.print_exc()
        print("dsas-bench: internal error (a bug, not your input): please report it on the dsas_bench issue "
              "tracker with the command line and the traceback above", file=sys.stderr)
        return 1
