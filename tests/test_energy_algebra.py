"""The energy algebra, operator by operator, against its formula (values and gradients)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ebmkit import EbmkitError, Energy, disjunction
from ebmkit._host.energy import ConditionedEnergy, EnergyShapeError, SumEnergy


class Bowl(Energy):
    def __init__(self, center, scale=1.0):
        super().__init__()
        self.center = nn.Parameter(torch.tensor(center, dtype=torch.float64))
        self.scale = nn.Parameter(torch.tensor(scale, dtype=torch.float64))

    def forward(self, x, cond=None):
        return self.scale * ((x - self.center) ** 2).sum(1)


class ClassBowls(Energy):
    """A conditional energy: one centre per class."""

    def __init__(self):
        super().__init__()
        self.centers = nn.Parameter(torch.randn(4, 2, dtype=torch.float64))

    def forward(self, x, cond=None):
        return ((x - self.centers[cond]) ** 2).sum(1)


@pytest.fixture
def parts():
    torch.manual_seed(0)
    a, b, c = Bowl([1.0, 0.0], 1.0).named("a"), Bowl([-1.0, 0.5], 0.5).named("b"), Bowl([0.0, 2.0], 2.0).named("c")
    x = torch.randn(16, 2, dtype=torch.float64)
    return a, b, c, x


def grads(value: torch.Tensor, params) -> list[torch.Tensor]:
    return list(torch.autograd.grad(value.sum(), params, allow_unused=False))


CASES = {
    "sum": (lambda a, b: a + b, lambda ea, eb: ea + eb),
    "scale_left": (lambda a, b: 2.5 * a, lambda ea, eb: 2.5 * ea),
    "scale_right": (lambda a, b: a * 0.25, lambda ea, eb: 0.25 * ea),
    "temperature": (lambda a, b: a / 4.0, lambda ea, eb: ea / 4.0),
    "negation": (lambda a, b: -a, lambda ea, eb: -ea),
    "and_not": (lambda a, b: a - b, lambda ea, eb: ea - eb),
    "weighted_and_not": (lambda a, b: a - 0.5 * b, lambda ea, eb: ea - 0.5 * eb),
    "or": (lambda a, b: a | b, lambda ea, eb: -torch.logsumexp(torch.stack([-ea, -eb]), 0)),
    "or_temperature": (
        lambda a, b: disjunction(a, b, temperature=0.1),
        lambda ea, eb: -0.1 * torch.logsumexp(torch.stack([-ea / 0.1, -eb / 0.1]), 0),
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_operator_matches_formula_in_value_and_gradients(case, parts):
    a, b, _, x = parts
    build, formula = CASES[case]
    composite = build(a, b)
    params = [a.center, a.scale, b.center, b.scale]
    x1 = x.clone().requires_grad_(True)
    x2 = x.clone().requires_grad_(True)
    got, want = composite(x1), formula(a(x2), b(x2))
    torch.testing.assert_close(got, want)
    got_grads = torch.autograd.grad(got.sum(), [x1, *params], allow_unused=True)
    want_grads = torch.autograd.grad(want.sum(), [x2, *params], allow_unused=True)
    for g, w in zip(got_grads, want_grads, strict=True):
        if w is None:
            assert g is None or torch.all(g == 0)
        else:
            torch.testing.assert_close(g, w)


def test_or_at_low_temperature_approaches_the_minimum(parts):
    a, b, _, x = parts
    with torch.no_grad():
        torch.testing.assert_close(disjunction(a, b, temperature=1e-4)(x), torch.minimum(a(x), b(x)), atol=1e-3, rtol=0)


def test_given_fixes_the_condition_and_passes_gradients():
    torch.manual_seed(0)
    model = ClassBowls().named("E")
    x = torch.randn(8, 2, dtype=torch.float64, requires_grad=True)
    fixed = model.given(2)
    got = fixed(x)
    want = model(x, torch.full((8,), 2))
    torch.testing.assert_close(got, want)
    (g_got,) = torch.autograd.grad(got.sum(), model.centers)
    (g_want,) = torch.autograd.grad(want.sum(), model.centers)
    torch.testing.assert_close(g_got, g_want)
    assert g_got[2].abs().sum() > 0 and g_got[[0, 1, 3]].abs().sum() == 0
    composed = model.given(1) + model.given(3)
    torch.testing.assert_close(composed(x), model(x, torch.full((8,), 1)) + model(x, torch.full((8,), 3)))
    with pytest.raises(EbmkitError, match="already has its condition fixed"):
        fixed(x, torch.zeros(8, dtype=torch.long))


def test_given_with_one_condition_vector_broadcasts():
    class Linear(Energy):
        def forward(self, x, cond=None):
            return (x * cond).sum(1)

    x = torch.randn(5, 3)
    torch.testing.assert_close(Linear().given(torch.tensor([1.0, 0.0, 2.0]))(x), x[:, 0] + 2 * x[:, 2])


def test_sums_flatten_and_scales_fold(parts):
    a, b, c, _ = parts
    total = (a + b) + (c + a)
    assert isinstance(total, SumEnergy) and len(total.terms) == 4
    assert (3 * (2 * a)).weight == 6.0
    assert isinstance(a.given(0), ConditionedEnergy)


def test_repr_reads_like_the_expression(parts):
    a, b, c, _ = parts
    assert repr(a + b + c) == "a + b + c"
    assert repr(a - 0.5 * b) == "a - 0.5 * b"
    assert repr(a - b) == "a - b"
    assert repr(-a) == "-a"
    assert repr(2 * (a + b)) == "2 * (a + b)"
    assert repr(a | (b + c)) == "a | (b + c)"
    assert repr(disjunction(a, b, temperature=0.01)) == "disjunction(a | b, temperature=0.01)"
    assert repr(a.given(3) + b) == "a.given(3) + b"


def test_composites_are_modules(parts):
    a, b, c, x = parts
    expr = 0.5 * (a + b) - c
    assert {id(p) for p in expr.parameters()} == {id(p) for m in (a, b, c) for p in m.parameters()}
    state = expr.state_dict()
    assert len(state) == 6
    clone = 0.5 * (Bowl([0.0, 0.0]) + Bowl([0.0, 0.0])) - Bowl([0.0, 0.0])
    clone.load_state_dict(state)
    torch.testing.assert_close(clone(x), expr(x))
    assert expr.to(torch.float32)(x.float()).dtype == torch.float32


def test_the_shape_contract_is_enforced():
    class Wrong(Energy):
        def forward(self, x, cond=None):
            return x.sum(1, keepdim=True)

    with pytest.raises(EnergyShapeError, match=r"shape \(4, 1\) for a batch of 4"):
        Wrong()(torch.zeros(4, 2))


def test_unsupported_operands_raise_type_error(parts):
    a, *_ = parts
    with pytest.raises(TypeError):
        a + 1.0
    with pytest.raises(TypeError):
        a * "x"
    with pytest.raises(EbmkitError):
        a / 0
