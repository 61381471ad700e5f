"""Argument types, the flags run and sweep share, and the report commands' common arguments."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from dsas_bench.core.errors import UsageError

if TYPE_CHECKING:
    from dsas_bench.run.strengths import Budget


def list_arg(item: Callable[[str], Any]) -> Callable[[str], list[Any]]:
    def parse(text: str) -> list[Any]:
        return [item(part.strip()) for part in text.split(",") if part.strip()]

    return parse


def strength_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"strength {text!r} is not a finite number: use e.g. --strengths 0.25,0.5,1")
    return value


def strengths_arg(text: str) -> Any:
    from dsas_bench.run.strengths import parse_strengths_text

    try:
        return parse_strengths_text(text)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def budget_arg(text: str) -> Budget:
    from dsas_bench.run.strengths import parse_budget

    try:
        return parse_budget(text)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def budget_text_arg(text: str) -> str:
    """A budget as given (``1`` or ``5%``), once checked."""
    budget_arg(text)
    return text


def seed_arg(text: str) -> int:
    if not text.lstrip("-").isdigit():
        raise argparse.ArgumentTypeError(f"seed {text!r} is not an integer: use e.g. --seeds 0,1,2")
    return int(text)


def option_arg(text: str) -> tuple[str, Any]:
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
    (("--strengths",), "strengths", {"type": strengths_arg, "help": "auto (calibrate each method, DSAS mode and seed "
                                     "to --max-delta-ppl), paper (each method's range from its paper), a λ grid "
                                     "such as 0.25,0.5,1, or per method[:mode]: 'linacts=0.25,0.5;actadd=1,2,4;"
                                     "iti:on=auto' (unnamed methods: their paper range)"}),
    (("--n-strengths",), "n_strengths", {"type": int, "help": "auto: strengths per method, DSAS mode and seed, "
                                         "spread over (0, λ_max]"}),
    (("--strength-spacing",), "strength_spacing", {"choices": ["linear", "geometric"],
                                                   "help": "auto: linear, or geometric (halving from λ_max)"}),
    (("--max-delta-ppl",), "max_delta_ppl", {"type": budget_text_arg, "help": "auto: the "
                                             "utility budget, perplexity above the unsteered model, absolute "
                                             "(1: AcT's +1) or relative (5%%)"}),
    (("--n-calibration-texts",), "n_calibration_texts", {"type": int, "help": "auto: neutral texts the "
                                                         "calibration measures, apart from the perplexity and "
                                                         "control texts"}),
    (("--seeds",), "seeds", {"type": list_arg(seed_arg), "help": "comma-separated seeds (fit sub-samples and "
                             "sampling)"}),
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
    (("--utility",), "utility", {"type": list_arg(str), "help": "comma-separated utility metrics measured on the "
                                 "steered model, in order: perplexity (always), lm-eval (with --lm-eval-tasks) "
                                 "and plug-ins (`dsas-bench ls utility`)"}),
    (("--lm-eval-tasks",), "lm_eval_tasks", {"type": list_arg(str), "help": "comma-separated lm-eval tasks, each "
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
    (("--devices",), "devices", {"type": list_arg(str), "help": "one worker per device, each loading the model "
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


def add_common(parser: argparse.ArgumentParser) -> None:
    from dsas_bench.core.fieldtypes import describe
    from dsas_bench.run.config import settable_fields

    parser.add_argument("--task", default="demo", help="task config: a name in tasks/ (demo, paper, shared-rtp) "
                        "or a YAML path; flags override it (default: demo)")
    defaults = _demo_defaults()
    for flags, key, kwargs in COMMON_FLAGS:
        shown = f" (demo: {defaults[key]})".replace("%", "%%") if key in defaults and "const" not in kwargs else ""
        parser.add_argument(*flags, dest=key, default=None, **{**kwargs, "help": kwargs["help"] + shown})
    parser.add_argument("--method-option", dest="method_option", action="append", default=[], type=option_arg,
                        metavar="KEY=VALUE", help="a method option, e.g. estimation=at-once (repeatable)")
    parser.add_argument("--dsas-option", dest="dsas_option", action="append", default=[], type=option_arg,
                        metavar="[MODE:]KEY=VALUE", help="an option of the DSAS mode MODE, e.g. on:n_components=5 "
                        "or cast:decide_at=6 (repeatable; MODE may be left out when the run has one DSAS mode "
                        "besides off); `dsas-bench ls scalers` lists each mode's options")
    parser.add_argument("--behavior-option", "--behaviour-option", dest="behavior_option", action="append",
                        default=[], type=option_arg, metavar="KEY=VALUE", help="a behaviour option, e.g. "
                        "hub_dataset=stanfordnlp/sst2 for sentiment (repeatable; `dsas-bench ls behaviors`)")
    parser.add_argument("--scorer-option", dest="scorer_option", action="append", default=[], type=option_arg,
                        metavar="KEY=VALUE", help="a scorer option, e.g. variant=unbiased for detoxify, "
                                                  "model=<folder> for roberta-rtc (repeatable)")
    parser.add_argument("--set", dest="settings", action="append", default=[], type=setting_arg, metavar="KEY=VALUE",
                        help="set any task-config field, read as YAML and checked by its type; a list also as "
                             "a,b (repeatable; flags and --set may not give one field twice). Fields: "
                             + ", ".join(f"{name} ({describe(kind)})" for name, kind in settable_fields().items()))
    parser.add_argument("--fresh", action="store_true", help="recompute this run's cells and refit its "
                        "interventions instead of resuming (rows of other runs in the output directory are kept)")
    parser.add_argument("--dry-run", dest="dry_run", action="store_true", help="print the plan, the work and an "
                        "estimated time (from a few seconds of measured throughput), and write nothing")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--no-plot", action="store_true", help="skip the Pareto plot at the end")


def setting_arg(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--set {text!r} is not KEY=VALUE, e.g. --set temperature=0.7")
    return key.strip(), value


def overrides(args: argparse.Namespace, methods: list[str] | None, dsas: list[str] | None) -> dict[str, Any]:
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
        overrides["dsas_options"] = dsas_options(args.dsas_option, dsas)
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


def dsas_options(given: list[tuple[str, Any]], modes: list[str] | None) -> dict[str, dict[str, Any]]:
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


REPORT_FILTERS = {"model": "--model", "scorer": "--scorer", "prompt_set": "--prompt-set"}


def report_rows(args: argparse.Namespace) -> list[dict[str, Any]]:
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


def report_dir(args: argparse.Namespace) -> Path:
    """--output, or the first results directory (the folder of a JSONL file), checked to be writable."""
    from dsas_bench.run.results import check_output_dir

    first = Path(args.results[0])
    out = Path(args.output) if args.output else first if first.is_dir() else first.parent
    check_output_dir(out)
    return out


def add_objective(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--objective", default=None,
                        help="the number to rank and draw by: one of the objectives of the behaviour the rows "
                             "measured (default: its default objective, e.g. toxicity's %% toxic); `dsas-bench ls "
                             "behaviors` lists each behaviour's objectives")


def add_report_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", nargs="+", metavar="RESULTS",
                        help="results directories (holding results.jsonl) or results JSONL files")
    parser.add_argument("--model", help="keep the rows of this model (required when the results mix models)")
    parser.add_argument("--scorer", help="keep the rows of this toxicity scorer (required when they mix scorers)")
    parser.add_argument("--prompt-set", dest="prompt_set",
                        help="keep the rows of this prompt set, e.g. demo:1a2b3c4d (required when they mix sets)")
    parser.add_argument("--output", "-o", help="directory for the files (default: the first results directory)")
