"""Hook overhead: SmolLM2 with steering on every post-attention norm vs no hooks at all.

    python benchmarks/hook_overhead.py [--repeats 9] [--batch 32] [--threads 1] [--quick]

Three workloads on a batch of demo prompts, each a median over interleaved rounds:
- prefill: one forward pass over the left-padded prompts (last-position logits only, as ``generate`` does);
- decode: 8 KV-cached forward passes of one new token per row (the cache is cropped back afterwards);
- hooks alone: the hooked norm modules called directly on real activations of each shape (each layer's input
  from the prefill), which isolates the hooks' own cost from the rest of the model.
Maps: Linear-AcT fitted at once on the demo fit sets, and its ω, β reused for a shift map (ActAdd, ITI) and a
LinEAS affine map: the hooks' cost does not depend on the values. DSAS: the scaler fitted on the same sets.
Times are per forward pass; ratios are medians of per-round ratios, in CPU time of this process (with one
thread, time spent waiting while other work holds the core does not count) and in wall-clock time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from statistics import median

import torch
from _timing import demo_fit_sets, fresh_cache, interleaved, ratio, script_parser, start, table, timed

from dsas_bench.core.data import load_prompts
from dsas_bench.core.hooks import Scaler, SteeringMap, steer
from dsas_bench.core.models import LoadedModel, load_model
from dsas_bench.core.modules import select_modules
from dsas_bench.methods import get_method
from dsas_bench.scalers import fit_scaler

STRENGTH = 0.5
INNER = 20  # passes per timed call of the µs-scale "hooks alone" workloads
DECODE_STEPS = 8
Config = tuple[dict[str, SteeringMap], Scaler | None]


def steering_configs(lm: LoadedModel, modules: list[str]) -> dict[str, Config]:
    """No steering, then each map shape the built-in methods use, then Linear-AcT with DSAS."""
    with fresh_cache():
        sets = demo_fit_sets()
        linacts = get_method("linacts")(estimation="at-once").fit(lm, modules, sets)
        scaler = fit_scaler("on", lm, linacts, modules, sets)
    gated = sum(mode != "on" for mode in scaler.modes)
    print(f"DSAS scaler: {len(modules) - gated} of {len(modules)} modules computing σ(uᵀh + c), {gated} gated")
    params = linacts.state
    shift = {m: get_method("actadd")().make_map({"v": p["beta"]}) for m, p in params.items()}
    affine = {m: get_method("lineas")().make_map({"omega": p["omega"], "bias": p["beta"]}) for m, p in params.items()}
    return {"none": ({}, None), "shift (ActAdd, ITI)": (shift, None), "affine (LinEAS)": (affine, None),
            "Linear-AcT": (linacts.maps(lm.device), None), "Linear-AcT + DSAS": (linacts.maps(lm.device), scaler)}


def workloads(lm: LoadedModel, modules: list[str], batch_size: int) -> dict[str, Callable[[], object]]:
    """name -> a call to time, with no hooks of its own."""
    prompts = [p.text for p in load_prompts()]
    texts = [prompts[i % len(prompts)] for i in range(batch_size)]
    batch = lm.tokenizer(texts, return_tensors="pt", padding=True).to(lm.device)
    with torch.inference_mode():
        out = lm.model(**batch, use_cache=True, logits_to_keep=1, output_hidden_states=True)
    cache = out.past_key_values
    length = batch["input_ids"].shape[1]
    step_ids = batch["input_ids"][:, -1:]
    step_masks = [torch.cat([batch["attention_mask"], torch.ones(batch_size, step, dtype=torch.long,
                                                                device=lm.device)], dim=1)
                  for step in range(1, DECODE_STEPS + 1)]
    norms = [lm.model.get_submodule(name) for name in modules]
    if len(norms) != len(out.hidden_states) - 1:
        raise ValueError("hooks alone feeds layer i's input to the i-th module: steer one module per layer")
    inputs = {"prefill": out.hidden_states[:-1], "decode": [h[:, -1:] for h in out.hidden_states[:-1]]}

    @torch.inference_mode()
    def prefill() -> None:
        lm.model(**batch, logits_to_keep=1)

    @torch.inference_mode()
    def decode() -> None:
        for mask in step_masks:
            lm.model(input_ids=step_ids, attention_mask=mask, past_key_values=cache, logits_to_keep=1)
        cache.crop(-DECODE_STEPS)

    def hooks_alone(layer_inputs: Sequence[torch.Tensor]) -> Callable[[], None]:
        @torch.inference_mode()
        def call() -> None:
            for _ in range(INNER):
                for norm, x in zip(norms, layer_inputs, strict=True):
                    norm(x)
        return call

    print(f"batch: {batch_size} demo prompts, {length} tokens after left padding")
    return {"prefill": prefill, "decode": decode,
            **{f"hooks alone ({shape} shape)": hooks_alone(x) for shape, x in inputs.items()}}


def steered(call: Callable[[], object], lm: LoadedModel, config: Config) -> Callable[[], None]:
    """``call`` with the config's hooks on (none at all for the unsteered config)."""
    maps, scaler = config
    if not maps:
        return call

    def run() -> None:
        with steer(lm.model, maps, STRENGTH, scaler):
            call()
    return run


def main() -> None:
    parser = script_parser(__doc__)
    parser.add_argument("--repeats", type=int, default=9, help="timed rounds per workload (default 9)")
    parser.add_argument("--batch", type=int, default=32, help="prompts per batch (default 32)")
    parser.add_argument("--quick", action="store_true", help="3 rounds")
    args = parser.parse_args()
    repeats = 3 if args.quick else args.repeats
    start(args)
    lm = load_model("smollm2")
    modules = select_modules(lm.model, "post-attn-norm")
    configs = steering_configs(lm, modules)
    for workload, call in workloads(lm, modules, args.batch).items():
        passes = {"prefill": 1, "decode": DECODE_STEPS}.get(workload, INNER)
        times = interleaved({name: timed(steered(call, lm, config)) for name, config in configs.items()}, repeats)
        cpu = {name: 1000 * median(t[1] for t in times[name]) / passes for name in configs}
        rows = [[name, f"{cpu[name]:.2f}", f"{cpu[name] - cpu['none']:+.2f}",
                 *(f"{1 / ratio(times, name, 'none', clock):.3f}" for clock in (1, 0))] for name in configs]
        print(f"\n## {workload}: {repeats} interleaved rounds, medians\n")
        print(table(["steering", "CPU ms per pass", "CPU ms over none", "throughput vs none (CPU)",
                     "throughput vs none (wall)"], rows))
        if workload in ("prefill", "decode"):
            dsas = [1 / ratio(times, "Linear-AcT + DSAS", "Linear-AcT", clock) for clock in (1, 0)]
            print(f"\nLinear-AcT + DSAS vs Linear-AcT throughput: {dsas[0]:.3f} (CPU), {dsas[1]:.3f} (wall)")


if __name__ == "__main__":
    main()
