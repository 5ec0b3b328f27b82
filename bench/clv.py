"""CLV model fits: Patron's numpy/scipy models beside lifetimes 0.11.3, same data, one run.

    python bench/clv.py                      # 1,000,000 customers
    python bench/clv.py --customers 100000

Data: simulated period summaries in **days** for a shop two years old (ages T uniform in
1..730 days, last purchase rounded down to the day, as a daily summary gives):

* BG/NBD data from the BG/NBD process with CDNOW's estimates rescaled to days
  (r=0.243, α=4.414·7, a=0.793, b=2.426); Gamma-Gamma spend on it (p=6.25, q=3.74, v=15.44);
* Pareto/NBD data from the Pareto/NBD process (r=0.553, α=10.578·7, s=0.606, β=11.669·7).

lifetimes needs pandas < 3 / numpy < 2, so it runs in its own venv
(``bench/.venv-lifetimes``, created on first use with pip) in a subprocess that reads the
same arrays from a .npz file. Fit times are wall-clock of the ``fit`` call (ours includes
compressing the data, lifetimes' includes its input checks). Log-likelihoods are **totals**
over all customers, both parameter sets evaluated with the same function (ours); lifetimes'
own function at its parameters is shown as a cross-check (its BG/NBD and Gamma-Gamma
objectives are per-customer means, so they are multiplied back by the customer count).

Both processes run with ``OPENBLAS_NUM_THREADS=1``: on the project's 2 shared cores,
OpenBLAS worker threads spin-wait between the many tiny BLAS calls of an optimiser and
slow both libraries down several-fold (ours ~3-7×).

Target (issue #4): ≥ 20× faster than lifetimes on BG/NBD and Pareto/NBD with a total
log-likelihood no worse.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads OpenBLAS

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from patron.analytics.clv import BetaGeo, GammaGamma, ParetoNBD
from patron.analytics.clv_simulate import (
    simulate_bgnbd,
    simulate_gamma_gamma,
    simulate_pareto_nbd,
)

VENV = Path(__file__).parent / ".venv-lifetimes"
REQUIREMENTS = ["lifetimes==0.11.3", "pandas<3", "numpy<2", "scipy<1.14"]
BG_TRUTH = (0.243, 4.414 * 7, 0.793, 2.426)
PARETO_TRUTH = (0.553, 10.578 * 7, 0.606, 11.669 * 7)
GG_TRUTH = (6.25, 3.74, 15.44)
console = Console(width=200)

LIFETIMES_SCRIPT = r"""
import json, sys, time, warnings
import numpy as np
from lifetimes import BetaGeoFitter, GammaGammaFitter, ParetoNBDFitter
warnings.simplefilter("ignore")
d = np.load(sys.argv[1])
out = {}
def run(name, make, args, own_ll):
    started = time.perf_counter()
    fitter = make().fit(*args)
    seconds = time.perf_counter() - started
    params = [float(v) for v in fitter.params_.values]
    out[name] = {"seconds": seconds, "params": params, "own_ll": own_ll(fitter, params)}
    print(name, round(seconds, 2), params, file=sys.stderr, flush=True)
n_bg = d["bg_x"].size
run("BG/NBD", BetaGeoFitter, (d["bg_x"], d["bg_t"], d["bg_T"]),
    lambda f, p: -n_bg * float(f._negative_log_likelihood(
        np.log(p), d["bg_x"], d["bg_t"], d["bg_T"], np.ones(n_bg), 0.0)))
has = (d["bg_x"] > 0) & (d["gg_m"] > 0)
run("Gamma-Gamma", GammaGammaFitter, (d["bg_x"][has], d["gg_m"][has]),
    lambda f, p: -int(has.sum()) * float(f._negative_log_likelihood(
        np.log(p), d["bg_x"][has], d["gg_m"][has], np.ones(int(has.sum())), 0.0)))
n_p = d["pn_x"].size
run("Pareto/NBD", ParetoNBDFitter, (d["pn_x"], d["pn_t"], d["pn_T"]),
    lambda f, p: -float(f._negative_log_likelihood(
        p, d["pn_x"], d["pn_t"], d["pn_T"], np.ones(n_p), 0.0)))
json.dump(out, open(sys.argv[2], "w"))
"""


def ensure_venv() -> Path:
    python = VENV / "bin" / "python"
    if not python.exists():
        console.print(f"creating {VENV} with {' '.join(REQUIREMENTS)} …")
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *REQUIREMENTS], check=True)
    return python


def simulate(customers: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    ages = rng.integers(1, 731, customers).astype(np.float64)
    bg_x, bg_t, bg_T = simulate_bgnbd(rng, ages, *BG_TRUTH)
    pn_x, pn_t, pn_T = simulate_pareto_nbd(rng, ages, *PARETO_TRUTH)
    return {
        "bg_x": bg_x,
        "bg_t": np.floor(bg_t),
        "bg_T": bg_T,
        "gg_m": np.round(simulate_gamma_gamma(rng, bg_x, *GG_TRUTH), 2),
        "pn_x": pn_x,
        "pn_t": np.floor(pn_t),
        "pn_T": pn_T,
    }


def timed(fn: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-lifetimes", action="store_true", help="only time our models")
    args = parser.parse_args()

    data = simulate(args.customers, args.seed)
    console.print(f"{args.customers:,} customers simulated; fitting ours …")
    has = (data["bg_x"] > 0) & (data["gg_m"] > 0)
    bg, bg_s = timed(lambda: BetaGeo.fit(data["bg_x"], data["bg_t"], data["bg_T"]))
    pn, pn_s = timed(lambda: ParetoNBD.fit(data["pn_x"], data["pn_t"], data["pn_T"]))
    gg, gg_s = timed(lambda: GammaGamma.fit(data["bg_x"][has], data["gg_m"][has]))

    theirs: dict[str, Any] = {}
    if not args.no_lifetimes:
        python = ensure_venv()
        with tempfile.TemporaryDirectory() as tmp:
            npz, out = Path(tmp) / "data.npz", Path(tmp) / "out.json"
            np.savez(npz, **data)
            console.print("fitting lifetimes 0.11.3 (subprocess) …")
            subprocess.run([str(python), "-c", LIFETIMES_SCRIPT, str(npz), str(out)], check=True)
            theirs = json.loads(out.read_text())

    def ll(model: Any, params: list[float] | np.ndarray, which: str) -> float:
        m = type(model)(*params)
        if which == "gg":
            return float(m.log_likelihood(data["bg_x"][has], data["gg_m"][has]))
        return float(
            m.total_log_likelihood(data[f"{which}_x"], data[f"{which}_t"], data[f"{which}_T"])
        )

    table = Table(
        title=f"CLV fits, {args.customers:,} customers (days), ours vs lifetimes 0.11.3",
        caption="LL: total log-likelihood of each parameter set, same function (ours); "
        "own LL: lifetimes' own function at its parameters",
    )
    cols = (
        "model",
        "ours s",
        "lifetimes s",
        "speed-up",
        "LL ours",
        "LL lifetimes",
        "Δ LL",
        "own LL",
    )
    for col in cols:
        table.add_column(col, justify="right" if col != "model" else "left")
    table.add_column("params: ours / lifetimes / truth")
    for name, model, seconds, which, truth in (
        ("BG/NBD", bg, bg_s, "bg", BG_TRUTH),
        ("Pareto/NBD", pn, pn_s, "pn", PARETO_TRUTH),
        ("Gamma-Gamma", gg, gg_s, "gg", GG_TRUTH),
    ):
        ours_ll = ll(model, model.values, which)
        row = [name, f"{seconds:.2f}"]
        fmt = " ".join(f"{v:.4g}" for v in model.values)
        if name in theirs:
            t = theirs[name]
            their_ll = ll(model, t["params"], which)
            row += [
                f"{t['seconds']:.2f}",
                f"{t['seconds'] / seconds:.0f}×",
                f"{ours_ll:,.2f}",
                f"{their_ll:,.2f}",
                f"{ours_ll - their_ll:+.3f}",
                f"{t['own_ll']:,.2f}",
            ]
            fmt += "\n" + " ".join(f"{v:.4g}" for v in t["params"])
        else:
            row += ["-", "-", f"{ours_ll:,.2f}", "-", "-", "-"]
        fmt += "\n" + " ".join(f"{v:.4g}" for v in truth)
        d = model.diagnostics
        assert d is not None
        row.append(
            f"{fmt}\n[dim]{d.patterns:,} patterns, {d.iterations} it, converged={d.converged}"
        )
        table.add_row(*row)
    console.print(table)


if __name__ == "__main__":
    main()
