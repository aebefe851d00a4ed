"""Candidate evaluation of one DAG growth step: the batched fit against a per-candidate loop in
GroMo's style, phase by phase, with an agreement check; writes ``bench/results/cpu_dag_candidates.md``.

Settings: the graph tutorial's (a DAG root → end plus one hidden node, every candidate of the step)
and a deeper DAG (6 nodes, 20+ candidates). Phases: the bottleneck pass (``calculate_bottleneck``,
shared by both paths), then candidate evaluation — statistics, solves, per-neuron first-order
improvements and block outputs of every candidate:

* ours: ``gromo.containers._candidate_fit.fit_candidates`` (one pass over the batches reads every
  source once, grouped batched solves inside one ``factorization_cache()`` block, block-structured
  matmuls for the activations);
* GroMo-style loop: for each candidate, concatenate its own inputs and targets, run its own passes
  over the batches (``neuron_batch_size`` rows), and its own solve (fp32 LU, GroMo's
  ``optimal_delta``), the way GroMo's ``expand_node`` / ``update_edge_weights`` treat one candidate
  at a time. Same maths, so the results must agree.

    OMP_NUM_THREADS=1 python bench/bench_dag_candidates.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.gromo_style_solves import gromo_optimal_delta  # noqa: E402
from gromo.containers._candidate_descent import descend_candidates  # noqa: E402
from gromo.containers._candidate_fit import CandidatePlan, fit_candidates  # noqa: E402
from gromo.containers.growing_dag import ExpansionType  # noqa: E402
from gromo.containers.growing_graph_network import GrowingGraphNetwork  # noqa: E402
from gromo.utils.tools import lecun_normal_  # noqa: E402

LOSS = nn.CrossEntropyLoss()
BATCH = 256
EPOCHS = 10


def network(hidden_nodes: int, in_features: int, out_features: int, width: int, skips: bool) -> GrowingGraphNetwork:
    """root → end, plus a chain of ``hidden_nodes`` nodes of ``width`` neurons (and skip edges)."""
    net = GrowingGraphNetwork(in_features, out_features, LOSS, neurons=width, neuron_epochs=0,
                              neuron_batch_size=BATCH)
    dag = net.dag
    previous = dag.root
    for i in range(1, hidden_nodes + 1):
        dag.add_node_with_two_edges(previous, f"{i}@", dag.end, {"type": "linear", "size": width,
                                                                  "activation": "selu"})
        if skips and i >= 2:
            dag.add_direct_edge(dag.root, f"{i}@")
        previous = f"{i}@"
    for edge in dag.get_all_edge_modules():
        with torch.no_grad():
            lecun_normal_(edge.weight)
    return net


def plans_of(net: GrowingGraphNetwork, actions) -> list[CandidatePlan]:
    for action in actions:
        action.expand()
    return [net._plan(action) for action in actions]


def _batches(*tensors: torch.Tensor):
    """GroMo's batching of a candidate's tensors: a TensorDataset in a DataLoader of neuron_batch_size."""
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(*tensors), batch_size=BATCH)


def _slices(*tensors: torch.Tensor):
    """Plain row slices of neuron_batch_size (a lean loop, without GroMo's DataLoader)."""
    n = len(tensors[0])
    for begin in range(0, n, BATCH):
        yield tuple(t[begin:begin + BATCH] for t in tensors)


def gromo_style_fit(plan: CandidatePlan, bottlenecks: dict, activities: dict, alpha: torch.Tensor | None,
                    batches=_batches) -> dict:
    """One candidate on its own, as GroMo's ``expand_node`` / ``update_edge_weights`` organise it: its own
    concatenations ``X = cat(activities)``, ``V = cat(bottlenecks)``, its own DataLoader passes, its own
    fp32 LU solve; the first-order improvements and block outputs from a non-shuffled pass."""
    x_all = torch.cat([activities[name] for name in plan.inputs], dim=1)
    v_all = torch.cat([bottlenecks[name] for name in plan.targets], dim=1)
    n = len(x_all)
    if plan.kind == "edge":
        x_all = torch.cat([x_all, torch.ones(n, 1)], dim=1)
        s = m = 0.0
        for x, v in batches(x_all, v_all):
            s, m = s + x.T @ x, m + x.T @ v
        delta, decrease = gromo_optimal_delta(s / n, m / n)
        weight = -delta / decrease.sqrt()
        out = torch.cat([x @ weight.T for x, _ in batches(x_all, v_all)])
        return {"weight": weight[:, :-1], "out": out}
    s = m = 0.0
    for x, v in batches(x_all, v_all):
        h = plan.activation(x @ alpha.T)
        s, m = s + h.T @ h, m + h.T @ v
    delta, decrease = gromo_optimal_delta(s / n, m / n)
    omega = -delta / decrease.sqrt()
    foi, out = 0.0, []
    for x, v in batches(x_all, v_all):
        h = plan.activation(x @ alpha.T)
        foi = foi - (h * (v @ omega)).sum(0)
        out.append(h @ omega.T)
    return {"weight": alpha, "omega": omega, "foi": foi / n, "out": torch.cat(out)}


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def run_case(name: str, net: GrowingGraphNetwork, n: int, in_features: int, out_features: int,
             rounds: int) -> dict:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(n, in_features, generator=generator)
    y = torch.randint(0, out_features, (n,), generator=generator)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=BATCH)
    actions = net.dag.define_next_actions()
    start = time.perf_counter()
    bottleneck, activities = net.dag.calculate_bottleneck(actions, loader, LOSS)
    bottleneck_time = time.perf_counter() - start
    plans = plans_of(net, actions)
    ours_times, loop_times, lean_times = [], [], []

    def alphas() -> list:
        # the α each node candidate draws, in plan order (fit_candidates draws them the same way)
        torch.manual_seed(1)
        widths = {name: activities[name].shape[1] for name in activities}
        return [lecun_normal_(torch.empty(p.neurons, sum(widths[i] for i in p.inputs))) if p.kind == "node"
                else None for p in plans]

    for _ in range(rounds):
        torch.manual_seed(1)
        start = time.perf_counter()
        ours = fit_candidates(plans, bottleneck, activities, batch_size=BATCH)
        ours_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        loop = [gromo_style_fit(p, bottleneck, activities, a) for p, a in zip(plans, alphas())]
        loop_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        lean = [gromo_style_fit(p, bottleneck, activities, a, batches=_slices) for p, a in zip(plans, alphas())]
        lean_times.append(time.perf_counter() - start)
    worst = 0.0
    for fit, reference, other in zip(ours, loop, lean):
        worst = max(worst, relative(other["out"], reference["out"]))
        worst = max(worst, relative(fit.weight, reference["weight"]), relative(fit.block_output, reference["out"]))
        if fit.omega is not None:
            worst = max(worst, relative(fit.omega, reference["omega"]), relative(fit.foi, reference["foi"]))
    # Descent phase (neuron_epochs of GroMo's bi-level descent), node candidates only.
    nodes = [i for i, p in enumerate(plans) if p.kind == "node"]
    sources = list(dict.fromkeys(name for i in nodes for name in plans[i].inputs))
    targets = list(dict.fromkeys(name for i in nodes for name in plans[i].targets))
    x_all = torch.cat([activities[name] for name in sources], dim=1)
    v_all = torch.cat([bottleneck[name] for name in targets], dim=1)

    def columns(names, order, table):
        offsets, begin = {}, 0
        for name in order:
            offsets[name], begin = begin, begin + table[name].shape[1]
        return [offsets[name] + j for name in names for j in range(table[name].shape[1])]

    args = ([ours[i].weight for i in nodes], [net._start_bias(ours[i], actions[i]) for i in nodes],
            [ours[i].omega for i in nodes], [columns(plans[i].inputs, sources, activities) for i in nodes],
            [columns(plans[i].targets, targets, bottleneck) for i in nodes])
    activation = plans[nodes[0]].activation
    # warm-up: the first optimiser step imports torch's optimiser machinery (seconds, once per process)
    descend_candidates(*[[a[0]] for a in args], activation, x_all[:8], v_all[:8], lrate=1e-3, epochs=1,
                       batch_size=BATCH)
    start = time.perf_counter()
    batched = descend_candidates(*args, activation, x_all, v_all, lrate=1e-3, epochs=EPOCHS, batch_size=BATCH,
                                 generator=torch.Generator().manual_seed(2))
    descent_ours = time.perf_counter() - start
    start = time.perf_counter()
    singles = [descend_candidates(*[[a[j]] for a in args], activation, x_all, v_all, lrate=1e-3, epochs=EPOCHS,
                                  batch_size=BATCH, generator=torch.Generator().manual_seed(2))
               for j in range(len(nodes))]
    descent_loop = time.perf_counter() - start
    start = time.perf_counter()
    for j, i in enumerate(nodes):  # GroMo's own path: bi_level_bottleneck_optimization, one candidate at a time
        x_c = torch.cat([activities[name] for name in plans[i].inputs], dim=1)
        v_c = torch.cat([bottleneck[name] for name in plans[i].targets], dim=1)
        net.neuron_epochs = EPOCHS
        net.bi_level_bottleneck_optimization(args[0][j].clone(), args[2][j].clone(), args[1][j].clone(), x_c,
                                             activation, v_c, [], [], verbose=False)
    descent_gromo = time.perf_counter() - start
    descent_diff = max(relative(batched[2][j], singles[j][2][0]) for j in range(len(nodes)))
    kinds = [a.type for a in actions]
    return {
        "descent_ours": descent_ours, "descent_loop": descent_loop, "descent_gromo": descent_gromo,
        "descent_diff": descent_diff, "node_candidates": len(nodes),
        "case": name, "nodes": net.dag.number_of_nodes() - sum(k is ExpansionType.NEW_NODE for k in kinds),
        "candidates": len(plans), "edges": sum(k is ExpansionType.NEW_EDGE for k in kinds),
        "new_nodes": sum(k is ExpansionType.NEW_NODE for k in kinds),
        "expanded": sum(k is ExpansionType.EXPANDED_NODE for k in kinds), "n": n,
        "bottleneck": bottleneck_time, "ours": min(ours_times), "loop": min(loop_times), "lean": min(lean_times),
        "agreement": worst,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "cpu_dag_candidates.md"))
    args = parser.parse_args()
    warnings.simplefilter("ignore", UserWarning)
    torch.manual_seed(0)
    cases = [
        ("tutorial: root→end + 1 hidden node (20 neurons), in 20, out 5",
         network(1, 20, 5, 20, skips=False), 4096, 20, 5),
        ("deeper: 6 nodes (4 hidden × 20 in a chain, each also → end), in 20, out 5",
         network(4, 20, 5, 20, skips=False), 4096, 20, 5),
    ]
    rows = [run_case(name, net, n, d, c, args.rounds) for name, net, n, d, c in cases]
    sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                         cwd=Path(__file__).parent).stdout.strip()
    lines = [
        "# Candidate evaluation of one DAG growth step (CPU)",
        "",
        f"git {sha}, torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f}, best of {args.rounds} "
        "interleaved rounds. Candidate evaluation = statistics + solves + first-order improvements + block "
        "outputs of every candidate; the bottleneck pass is shared by both paths.",
        "",
        "| case | candidates (edges / new nodes / expanded) | n | bottleneck pass | GroMo-style loop "
        "(DataLoader) | lean loop (slices) | ours | ratio vs GroMo-style | ratio vs lean | max rel. difference |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['case']} | {r['candidates']} ({r['edges']} / {r['new_nodes']} / {r['expanded']}) | {r['n']} | "
            f"{r['bottleneck'] * 1e3:.0f} ms | {r['loop'] * 1e3:.1f} ms | {r['lean'] * 1e3:.1f} ms | "
            f"{r['ours'] * 1e3:.1f} ms | **{r['loop'] / r['ours']:.1f}×** | {r['lean'] / r['ours']:.1f}× | "
            f"{r['agreement']:.1e} |")
    lines += [
        "",
        f"Descent of the node candidates ({EPOCHS} epochs of GroMo's bi-level descent, batch {BATCH}, one run): "
        "ours = one batched optimisation of all candidates; loop = the same descent one candidate at a time "
        "(same batch order: equal results); GroMo = `bi_level_bottleneck_optimization` per candidate (GroMo's "
        "DataLoader loop, its own shuffles: equal in distribution only).",
        "",
        "| case | node candidates | GroMo per candidate | loop of single descents | ours batched | ratio vs GroMo | "
        "ratio vs loop | max rel. difference vs loop |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['case']} | {r['node_candidates']} | {r['descent_gromo']:.2f} s | {r['descent_loop']:.2f} s | "
            f"{r['descent_ours']:.2f} s | **{r['descent_gromo'] / r['descent_ours']:.1f}×** | "
            f"{r['descent_loop'] / r['descent_ours']:.1f}× | {r['descent_diff']:.1e} |")
    text = "\n".join(lines) + "\n"
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
