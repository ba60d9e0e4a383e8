"""DPC forecaster, forecast error, CPC loss and calibration."""

import numpy as np
import pytest
import torch

from vigil.model.calibration import fit_calibration
from vigil.model.dpc import DPCForecaster, cpc_loss, forecast_error


def test_forecaster_shapes_and_unit_norm():
    torch.manual_seed(0)
    f = DPCForecaster(dim=32, hidden=16, context=4, horizon=3)
    out = f(torch.randn(5, 7, 32))  # longer context than needed: last 4 used
    assert out.shape == (5, 3, 32)
    assert torch.allclose(out.norm(dim=-1), torch.ones(5, 3), atol=1e-5)


def test_forecaster_uses_only_last_context():
    torch.manual_seed(0)
    f = DPCForecaster(dim=8, hidden=8, context=2).eval()
    x = torch.randn(2, 5, 8)
    y = x.clone()
    y[:, :3] = torch.randn(2, 3, 8)  # change only what lies outside the window
    assert torch.allclose(f(x), f(y))
    y[:, -1] += 1.0
    assert not torch.allclose(f(x), f(y))


def test_forecaster_rejects_wrong_dim():
    with pytest.raises(ValueError):
        DPCForecaster(dim=8)(torch.randn(2, 3, 9))


def test_forecast_error_range():
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    b = torch.tensor([[2.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    assert torch.allclose(forecast_error(a, b), torch.tensor([0.0, 1.0, 2.0]), atol=1e-6)


def test_cpc_loss_low_when_forecast_matches_and_negatives_differ():
    """With orthonormal targets the loss has a closed form: a perfect forecast sits at the
    optimum log(1 + (n-1)·exp(-1/tau)) ≈ 0, a forecast of another item's target at ≈ 1/tau."""
    import math

    torch.manual_seed(0)
    n, tau = 12, 0.07
    q, _ = torch.linalg.qr(torch.randn(16, n))
    t = q.T.reshape(4, 3, 16)  # 12 orthonormal target embeddings
    good = cpc_loss(t, t, tau=tau)
    bad = cpc_loss(t.roll(1, dims=0), t, tau=tau)
    assert good.item() == pytest.approx(math.log(1 + (n - 1) * math.exp(-1 / tau)), abs=1e-5)
    assert bad.item() == pytest.approx(1 / tau, rel=1e-3)


def test_cpc_loss_trains_forecaster():
    """A forecaster learns a deterministic rotation of the sequence: loss drops."""
    torch.manual_seed(0)
    d, n = 8, 4
    f = DPCForecaster(dim=d, hidden=32, context=n, horizon=1)
    opt = torch.optim.Adam(f.parameters(), lr=3e-3)
    base = torch.nn.functional.normalize(torch.randn(16, d), dim=-1)
    seq = torch.stack([base.roll(k, dims=1) for k in range(n + 1)], dim=1)  # [16, n+1, d]
    first = None
    for _ in range(150):
        loss = cpc_loss(f(seq[:, :n]), seq[:, n:])
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = loss.item() if first is None else first
    assert loss.item() < 0.5 * first


def test_calibration_maps_median_and_q99():
    rng = np.random.default_rng(0)
    x = rng.normal(size=10000)
    cal = fit_calibration(x)
    z = cal.normalise([cal.median, cal.q99])
    assert np.allclose(z, [0.0, 1.0])
    p = cal.probability(cal.q99)
    assert abs(float(p) - 0.5) < 1e-9
    again = type(cal).from_dict(cal.to_dict())
    assert again == cal
    with pytest.raises(ValueError):
        fit_calibration([1.0])
