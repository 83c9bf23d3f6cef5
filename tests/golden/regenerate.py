"""Rebuild the golden outputs under tests/golden/<backend>/ (``make golden``).

Each backend registers a function returning ``{file name: text}`` built from tiny, fixed
fixtures; the tests compare the same functions' output to the files here, so a change
in emitted code shows up as a reviewed diff of these files.
"""
from __future__ import annotations

import sys
from pathlib import Path
from urllib.parse import quote

HERE = Path(__file__).resolve().parent


def every_node_experts(features=("age", "income ($)", "class", "x3")):
    """Two experts that together use every IR node and operator, over four features (renamed by ``features``)."""
    from fecc.ir import parse_postfix
    from fecc.search import Expert

    a, b, c, d = ("$" + quote(f, safe="_.") for f in features)

    def expert(k, region, correction, params, score, legacy, z, iterations):
        r, c = parse_postfix(region), parse_postfix(correction)
        from fecc.ir import to_math

        return Expert(name=f"expert_{k}", region_index=k, region=r, region_rule=to_math(r, digits=6), correction=c,
                      structure=c, params=params,
                      metrics={"valid": {"score": score, "legacy_score": legacy, "z": z}}, iterations=iterations)

    return [
        # a CART-like region with NaN routing; a correction using every numeric operator
        expert(1, f"{a} 50.5 gt {b} 30000.0 le {b} isnan or and",
               f"0.25 {a} 48.5 sub 0.1 mul add {b} 1000.0 div log add "
               f"{c} sqrt exp sigmoid tanh sub {d} square {d} cube add neg abs sign mul "
               f"{a} {c} min {a} {c} max sub add",
               {"c_0": 0.25, "t_1": 50.5, "t_2": 30000.0}, 0.8123, 0.8011, 2.71, 3),
        # every predicate operator, where, and the special constants
        expert(2, f"{c} 1.0 eq {d} 2.0 ne or {a} 30.0 lt {a} 60.0 ge and not and",
               f"{d} -0.0 le -1.5 {d} 1e-300 ge inf nan where where {a} 18.0 lt -inf 0.0 where add",
               {}, 0.8123, 0.8011, 1.9, 1),
    ]


def transform_fixture(features=("age", "income ($)", "class", "x3")):
    """Two transforms (seed 000) and one expert that reads them: the layout features, then tf_1, tf_2."""
    from fecc.ir import parse_postfix, to_math
    from fecc.lower.expert_source import TransformSource
    from fecc.search import Expert

    a, b, c, d = ("$" + quote(f, safe="_.") for f in features)
    transforms = [TransformSource("tf_1", parse_postfix(f"{a} {b} mul")),
                  TransformSource("tf_2", parse_postfix(f"{d} log {c} 2.0 div sub"))]
    region = parse_postfix(f"$tf_1 1500.0 gt {c} isnan or")
    correction = parse_postfix(f"0.1 $tf_2 mul $tf_1 1e-05 mul add")
    expert = Expert(name="expert_1", region_index=1, region=region, region_rule=to_math(region, digits=6),
                    correction=correction, structure=correction, params={},
                    metrics={"valid": {"score": 0.81, "legacy_score": 0.8, "z": 2.6}}, iterations=1)
    return [expert], transforms


def numba_fixtures() -> dict[str, str]:
    """The numba backend's goldens: one module whose experts use every IR node and operator."""
    from fecc.lower.numba_backend import emit_module

    features = ["age", "income ($)", "class", "x3"]
    experts, transforms = transform_fixture()
    return {"experts_every_node.py": emit_module(every_node_experts(features), features).text,
            "experts_transforms.py": emit_module(experts, features, transforms).text}


def c_fixtures() -> dict[str, str]:
    """The C backend's golden: experts.c of the same experts (every IR node and operator)."""
    from fecc.lower.c_backend import emit_experts_c

    features = ["age", "income ($)", "class", "x3"]
    from fecc.frontend import load_forest
    from fecc.lower.trees import array_engine_source

    # the trees' array engine as the ensemble library holds it (the template's whole glue: batch
    # blocks, NaN folding, categorical bitsets, the shallow pass, one row), for a stored model
    # with categorical splits
    engine, _ = array_engine_source(load_forest(TREES_LEGACY), name="legacy", api_prefix="fecc_legacy_",
                                    library="ensemble.so")
    experts, transforms = transform_fixture()
    return {"experts_every_node.c": emit_experts_c(every_node_experts(features), features).text,
            "legacy_engine_categorical.c": engine,
            "experts_transforms.c": emit_experts_c(experts, features, transforms).text}


#: The stored model of the array-engine and ONNX tree goldens: LightGBM, categorical splits (float64).
TREES_LEGACY = HERE.parent / "data" / "models" / "lightgbm-4.7.0" / "binary_categorical.txt"
#: The stored legacy model the ONNX golden graph holds (8 features, 10 trees).
ONNX_LEGACY = HERE.parent / "data" / "models" / "xgboost-3.2.0" / "binary_logistic.json"
ONNX_FEATURES = ["age", "income_k", "segment", "n_loans", "util_ratio", "tenure_m", "score_a", "score_b"]


def onnx_fixtures() -> dict[str, str]:
    """The ONNX graph's goldens, as onnx.printer text: the every-node experts alone (float64 input), and a
    whole bundle graph (legacy trees, the experts over the model's features, offset, link)."""
    from fecc.lower.onnx_graph import build_model, expressions_model, graph_text

    experts = every_node_experts(ONNX_FEATURES[:4])
    exprs = {f"{e.name}_{part}": getattr(e, part) for e in experts for part in ("region", "correction")}
    from fecc.frontend import load_forest

    whole = build_model(legacy=load_forest(ONNX_LEGACY), experts=experts, feature_names=ONNX_FEATURES,
                        link="logistic", base_margin="legacy+experts", aggregator=None, doc="golden fixture")
    from fecc.lower.onnx_trees import tree_model

    # the --trees onnx graph of a LightGBM model with categorical splits (zero threshold, category codes)
    trees = tree_model(load_forest(TREES_LEGACY), input_type="float64", doc="golden fixture")
    experts_t, transforms = transform_fixture(ONNX_FEATURES[:4])
    with_transforms = build_model(legacy=load_forest(ONNX_LEGACY), experts=experts_t, feature_names=ONNX_FEATURES,
                                  link="logistic", base_margin="legacy+experts", aggregator=None,
                                  doc="golden fixture", transforms=transforms)
    return {"experts_every_node.onnx.txt": graph_text(expressions_model(exprs, ONNX_FEATURES)),
            "bundle_transforms.onnx.txt": graph_text(with_transforms),
            "bundle_every_node.onnx.txt": graph_text(whole),
            "trees_categorical.onnx.txt": graph_text(trees)}


GENERATORS = {"numba": numba_fixtures, "c": c_fixtures, "onnx": onnx_fixtures}


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
