"""The supported affine map's float-mask fast path computes exactly what its definition says."""

import torch

from dsas_bench.steering.maps import SupportedAffineMap


def reference(h: torch.Tensor, omega, beta, lo, hi) -> torch.Tensor:
    """T(h) − h by the definition: (ω − 1) ⊙ h + β strictly inside (lo, hi), 0 elsewhere."""
    return torch.where((h > lo) & (h < hi), torch.addcmul(beta, omega - 1, h), 0.0)


def test_displacement_equals_the_masked_definition_with_its_gradient():
    generator = torch.Generator().manual_seed(0)
    d = 16
    omega, beta = 1 + 0.3 * torch.randn(d, generator=generator), torch.randn(d, generator=generator)
    lo, hi = -torch.rand(d, generator=generator), torch.rand(d, generator=generator)
    h = 1.5 * torch.randn(4, 7, d, generator=generator)
    h[0, 0], h[0, 1] = lo, hi  # exactly on the bounds: outside
    h = h.requires_grad_()
    steering_map = SupportedAffineMap(omega, beta, lo, hi)
    fast, slow = steering_map.displacement(h), reference(h, omega, beta, lo, hi)
    assert torch.equal(fast, slow)
    (fast_grad,), (slow_grad,) = (torch.autograd.grad(out.sum(), h) for out in (fast, slow))
    assert torch.equal(fast_grad, slow_grad)
    assert "slope" not in steering_map.state_dict()  # derived, not part of the state or its fingerprint
