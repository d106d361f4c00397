"""Run DAPPER's baselines on a given Lorenz-96 truth and observations.

Called by ``benchmarks/lorenz96.py`` in a subprocess (possibly another Python
environment, where DAPPER and its dependencies are installed):

    python _dapper_lorenz96.py INPUT.npz OUTPUT.json

``INPUT.npz`` holds ``truth`` (``(K + 1, 40)``, every model step from ``t = 0``),
``obs`` (``(Ko + 1, 40)``, at ``t = dto, 2 dto, ...``), ``first_guess`` (at
``t = 0``), ``dt``, ``every`` (model steps per observation), ``burn_in`` and
``methods`` (a JSON list of ``{"name", "kind", "lag", "xB"}`` with kind ``3dvar``,
``4dvar`` or ``ienks``: DAPPER's ``iEnKS('Sqrt', N=20, Lag=lag, xN=2)``, the
ensemble smoother whose ``rmse.a`` sakov2008 documents, 0.31 for ``Lag=4``).
The output maps each name to ``{"rmse.a", "wall_s"}``.

The model is DAPPER's own ``sakov2008`` Lorenz-96 (RK4, ``dt = 0.05``, ``F =
8``, ``R = I``) with its chronology set to these observation times and its
initial mean to our first guess, so both toolkits see the same data.
"""

import json
import sys
import time

import numpy as np


def _tolerant_observation_operator(operator):
    """DAPPER 1.7.1's ``Var4D`` calls ``HMM.Obs(ko)(ko)`` (once too often), which
    fails for the identity operator of ``sakov2008``: return an operator that
    answers a time index with itself and otherwise behaves as `operator`."""
    import dapper.mods as modelling

    class Tolerant(modelling.Operator):
        def __call__(self, *args, **kwargs):
            if len(args) == 1 and isinstance(args[0], (int, np.integer)):
                return self
            return super().__call__(*args, **kwargs)

    tolerant = Tolerant.__new__(Tolerant)
    tolerant.__dict__.update(operator.__dict__)
    return modelling.TimeDependentOperator(time_dependent=lambda ko: tolerant)


def main(source: str, target: str) -> None:
    import dapper.da_methods as da
    import dapper.mods as modelling
    from dapper.mods.Lorenz96.sakov2008 import HMM as sakov2008
    from dapper.tools.seeding import set_seed

    data = np.load(source)
    truth, obs = data["truth"], data["obs"]
    every = int(data["every"])
    hmm = sakov2008.copy()
    hmm.tseq = modelling.Chronology(
        float(data["dt"]), dko=every, Ko=obs.shape[0] - 1, BurnIn=float(data["burn_in"])
    )
    hmm.X0 = modelling.GaussRV(mu=data["first_guess"], C=0.001)
    hmm.Obs = _tolerant_observation_operator(hmm.Obs(0))
    results = {}
    for spec in json.loads(str(data["methods"])):
        if spec["kind"] == "3dvar":
            method = da.Var3D(xB=spec["xB"])
        elif spec["kind"] == "ienks":
            method = da.iEnKS("Sqrt", N=20, Lag=spec["lag"], xN=2.0)
        else:
            method = da.Var4D(Lag=spec["lag"], xB=spec["xB"])
        set_seed(3000)  # the ensemble's draws: the same on every run
        start = time.perf_counter()
        method.assimilate(hmm, truth, obs, liveplots=False)
        wall = time.perf_counter() - start
        method.stats.average_in_time()
        results[spec["name"]] = {
            "rmse.a": float(method.avrgs.rmse.a.val),
            "wall_s": wall,
        }
        print(f"DAPPER {spec['name']}: {results[spec['name']]}", flush=True)
    with open(target, "w") as file:
        json.dump(results, file)


if __name__ == "__main__":
    main(*sys.argv[1:3])
