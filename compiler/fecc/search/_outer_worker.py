"""Helper process of the gate: runs some outer folds' searches (see ``run_search``).

``python -m fecc.search._outer_worker JOB.pkl``: the job holds the data, the options,
the proposer and the outer fits to run; the results (fit, held-out margin, summary)
are pickled to the path the job names.  Nothing else is written besides the folds'
experience archives.
"""
from __future__ import annotations

import pickle
import sys


def main(argv: list[str]) -> int:
    from . import driver

    with open(argv[0], "rb") as fh:
        job = pickle.load(fh)
    driver._init_outer(job["payload"])
    out = [driver._outer_fit(j) for j in job["fits"]]
    tmp = job["result"] + ".part"
    with open(tmp, "wb") as fh:
        pickle.dump(out, fh, protocol=pickle.HIGHEST_PROTOCOL)
    import os

    os.replace(tmp, job["result"])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
