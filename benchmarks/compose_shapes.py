"""Composition of two separately trained conditional shapes models, measured.

Trains nothing: give the run folders of recipes/shapes_attribute.toml (one conditional on
colour, one on position; both trained without red shapes in the top-left corner):

    ebmkit run recipes/shapes_attribute.toml --set data.label=color    --out runs/shapes_color
    ebmkit run recipes/shapes_attribute.toml --set data.label=position --out runs/shapes_position
    python benchmarks/compose_shapes.py runs/shapes_color runs/shapes_position --out compositions/table

Each row is one `ebmkit compose` (the same code path), scored by the attribute_classifier
evaluator: the fraction of samples that carry what the "wanted" expression asks for, as a
classifier trained on the dataset's labels sees them, beside the chance level (every
combination equally likely). Writes the table as markdown (table.md) and each row's samples.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ebmkit._model import composition

RED_TOP_LEFT = "color.given(red) + position.given(top_left)"
BLUE_BOTTOM_RIGHT = "color.given(blue) + position.given(bottom_right)"
BLUE_NOT_TOP_RIGHT = "color.given(blue) - position.given(top_right)"
GREEN_TOP_LEFT = "color.given(green) + position.given(top_left)"
YELLOW_BOTTOM_RIGHT = "color.given(yellow) + position.given(bottom_right)"
EITHER = f"({GREEN_TOP_LEFT}) | ({YELLOW_BOTTOM_RIGHT})"
RED_OR_BLUE = f"({RED_TOP_LEFT}) | ({BLUE_BOTTOM_RIGHT})"

#: (samples drawn from, scored against)
ROWS = [
    # a combination held out of both models' training data
    (RED_TOP_LEFT, RED_TOP_LEFT),
    ("color.given(red)", RED_TOP_LEFT),
    ("position.given(top_left)", RED_TOP_LEFT),
    # a combination both models saw
    (BLUE_BOTTOM_RIGHT, BLUE_BOTTOM_RIGHT),
    ("color.given(blue)", BLUE_BOTTOM_RIGHT),
    ("position.given(bottom_right)", BLUE_BOTTOM_RIGHT),
    # negation: blue, but not in the top-right corner; at full weight and at the small weight
    # the reference gives a negated model
    (BLUE_NOT_TOP_RIGHT, BLUE_NOT_TOP_RIGHT),
    ("color.given(blue) - 0.1 * position.given(top_right)", BLUE_NOT_TOP_RIGHT),
    ("color.given(blue)", BLUE_NOT_TOP_RIGHT),
    # disjunction: (green and top-left) or (yellow and bottom-right). Either conjunction alone
    # satisfies the "or"; the disjunction should also cover both branches.
    (EITHER, EITHER),
    (EITHER, GREEN_TOP_LEFT),
    (EITHER, YELLOW_BOTTOM_RIGHT),
    (GREEN_TOP_LEFT, EITHER),
    (GREEN_TOP_LEFT, YELLOW_BOTTOM_RIGHT),
    (YELLOW_BOTTOM_RIGHT, EITHER),
    (YELLOW_BOTTOM_RIGHT, GREEN_TOP_LEFT),
    # the same with two branches that the conjunction rows above carry
    (RED_OR_BLUE, RED_OR_BLUE),
    (RED_OR_BLUE, RED_TOP_LEFT),
    (RED_OR_BLUE, BLUE_BOTTOM_RIGHT),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("color_run")
    parser.add_argument("position_run")
    parser.add_argument("--out", default="compositions/table")
    parser.add_argument("--samples", type=int, default=60)
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="e.g. sampler.rounds=5")
    args = parser.parse_args()
    out = Path(args.out)
    lines = ["| samples of | scored against | carries it | chance |", "|---|---|---|---|"]
    for i, (expression, wanted) in enumerate(ROWS):
        overrides = [f"compose.num_samples={args.samples}", f"compose.score='{wanted}'", *args.overrides]
        plan = composition.plan(
            None, expression, [f"color={args.color_run}", f"position={args.position_run}"], overrides
        )
        data = dict(plan.data, evaluators=[{"name": "attribute_classifier"}])
        record = composition.compose(composition.ComposePlan(plan.source, plan.settings, data), out / f"row{i:02d}")
        metrics = record["metrics"]
        fraction, chance = metrics["attribute_classifier/carries_expression"], metrics["attribute_classifier/chance"]
        cells = (f"`{expression}`", record["requirement"])  # a "|" inside a cell would end it
        lines.append("| {} | {} | {:.2f} | {:.3f} |".format(*(c.replace("|", "\\|") for c in cells), fraction, chance))
        print(lines[-1], flush=True)
    (out / "table.md").write_text("\n".join(lines) + "\n")
    print(json.dumps({"out": str(out)}))


if __name__ == "__main__":
    main()
