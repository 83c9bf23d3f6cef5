"""Rebuild the golden outputs under tests/golden/<backend>/ (``make golden``).

Each backend registers a function returning ``{file name: text}`` built from tiny, fixed
fixtures; the tests compare the same functions' output to the files here, so a change
in emitted code shows up as a reviewed diff of these files.
"""
from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def numba_fixtures() -> dict[str, str]:
    """The numba backend's goldens: one module whose experts use every IR node and operator."""
    from fecc.ir import parse_postfix
    from fecc.lower.numba_backend import emit_module
    from fecc.search import Expert

    features = ["age", "income ($)", "class", "x3"]

    def expert(k, region, correction, params, score, legacy, z, iterations):
        r, c = parse_postfix(region), parse_postfix(correction)
        from fecc.ir import to_math

        return Expert(name=f"expert_{k}", region_index=k, region=r, region_rule=to_math(r, digits=6), correction=c,
                      structure=c, params=params,
                      metrics={"valid": {"score": score, "legacy_score": legacy, "z": z}}, iterations=iterations)

    experts = [
        # a CART-like region with NaN routing; a correction using every numeric operator
        expert(1, "$age 50.5 gt $income%20%28%24%29 30000.0 le $income%20%28%24%29 isnan or and",
               "0.25 $age 48.5 sub 0.1 mul add $income%20%28%24%29 1000.0 div log add "
               "$class sqrt exp sigmoid tanh sub $x3 square $x3 cube add neg abs sign mul "
               "$age $class min $age $class max sub add",
               {"c_0": 0.25, "t_1": 50.5, "t_2": 30000.0}, 0.8123, 0.8011, 2.71, 3),
        # every predicate operator, where, and the special constants
        expert(2, "$class 1.0 eq $x3 2.0 ne or $age 30.0 lt $age 60.0 ge and not and",
               "$x3 -0.0 le -1.5 $x3 1e-300 ge inf nan where where $age 18.0 lt -inf 0.0 where add",
               {}, 0.8123, 0.8011, 1.9, 1),
    ]
    return {"experts_every_node.py": emit_module(experts, features).text}


GENERATORS = {"numba": numba_fixtures}


def main(argv: list[str]) -> int:
    for backend, make in GENERATORS.items():
        out = HERE / backend
        out.mkdir(exist_ok=True)
        for name, text in make().items():
            (out / name).write_text(text)
            print(f"wrote {out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
