"""``dsas-bench lm-eval``: lm-eval's own command line on a steered model."""

from __future__ import annotations

import argparse

from dsas_bench.cli.args import strength_arg


def lm_eval(args: argparse.Namespace) -> int:
    """lm-eval: lm-eval's own command line on the model steered by the intervention."""
    from dsas_bench.interop.lmeval_model import run_lm_eval_cli, steered_lm_eval_args

    return run_lm_eval_cli(steered_lm_eval_args(args.lm_eval_args, args.intervention, args.model, args.scaler,
                                                args.dsas, args.strength))


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add ``lm-eval`` to the subcommands."""
    lm_eval_parser = commands.add_parser(
        "lm-eval", help="lm-eval's own command line on a steered model",
        description="Run lm-eval's CLI (every task and flag: --num_fewshot, --log_samples, --output_path, ...) on the "
                    "model steered by a fitted intervention, as the sweep steers it: the arguments after -- go to "
                    "lm-eval, with --model dsas-steered and the model arguments set from these flags.")
    add = lm_eval_parser.add_argument
    add("--intervention", required=True, help="a run's <output>/interventions/<method>-<dsas>-seed<N> folder, or a "
        "saved file (.pt, .safetensors export, .gguf control vector, steering-vectors .pt)")
    add("--strength", type=strength_arg, required=True, help="strength λ of the steering")
    add("--model", help="HF id, local folder, .gguf file or smollm2 (default: the intervention's model)")
    add("--scaler", help="a scaler file (scaler.pt) to use instead of the intervention's own")
    add("--dsas", metavar="MODE", help="off (drop the intervention's scaler), or a mode such as on, e2e, cast, gate "
        "(require the scaler of that mode); "
        "default: the intervention's scaler if it has one")
    add("lm_eval_args", nargs="*", metavar="-- LM_EVAL_ARGS", help="lm-eval arguments, e.g. -- --tasks mmlu "
        "--num_fewshot 5 --output_path out")
    lm_eval_parser.set_defaults(handler=lm_eval)
