"""LinEAS on the tiny model: training lowers the loss, the proximal step sparsifies, state round-trips."""

import pytest
import torch

from dsas_bench.core.activations import pooled_activations
from dsas_bench.core.errors import UsageError
from dsas_bench.core.hooks import HookManager, StopForward, steer
from dsas_bench.core.modules import select_modules
from dsas_bench.methods import get_method
from dsas_bench.methods.base import FitSets, SteeringMethod
from dsas_bench.methods.lineas import shrink, sorted_w2

TOXIC = ["you are a stupid idiot", "shut up, you worthless fool", "what a pathetic loser you are",
         "I hate you and your dumb face", "go away, you disgusting moron", "nobody likes you, idiot",
         "you absolute clown", "what a dumb thing to say"]
KIND = ["you are a wonderful friend", "thank you for your kind help", "what a lovely day we had",
        "I appreciate you and your work", "please come again, dear friend", "everyone likes your smile",
        "you are so thoughtful", "what a kind thing to say"]
SETS = FitSets(TOXIC, KIND)


@pytest.fixture(scope="module")
def modules(tiny_lm) -> list[str]:
    return select_modules(tiny_lm.model, "post-attn-norm")


def train(lm, modules, **options) -> SteeringMethod:
    return get_method("lineas")(optimizer="adam", lr=0.05, **options).fit(lm, modules, SETS)


def test_training_lowers_the_loss_and_the_distance(tiny_lm, modules):
    method = train(tiny_lm, modules, steps=40)
    assert method.losses[-1] < 0.5 * method.losses[0]
    source = pooled_activations(tiny_lm, TOXIC, modules, steering=method.maps(), progress=False, use_cache=False)
    target = pooled_activations(tiny_lm, KIND, modules, progress=False)
    before = pooled_activations(tiny_lm, TOXIC, modules, progress=False)
    for name in modules:
        assert sorted_w2(source[name], target[name]) < 0.5 * sorted_w2(before[name], target[name])


def test_identity_at_the_start(tiny_lm, modules):
    method = train(tiny_lm, modules, steps=0)
    batch = tiny_lm.tokenizer(TOXIC, return_tensors="pt", padding=True)
    with torch.no_grad():
        plain = tiny_lm.model(**batch).logits
        with steer(tiny_lm.model, method.maps()):
            assert torch.equal(tiny_lm.model(**batch).logits, plain)


def test_proximal_step_gives_exact_zeros(tiny_lm, modules):
    dense = train(tiny_lm, modules, steps=10)
    sparse = train(tiny_lm, modules, steps=10, gamma=0.2)
    assert dense.support() == 1.0
    assert 0 < sparse.support() < 1
    assert any((params["omega"] == 1).any() for params in sparse.state.values())


def test_shrink_is_the_sparse_group_lasso_proximal_map():
    delta = torch.tensor([3.0, -0.5, 1.0, -2.0])
    torch.testing.assert_close(shrink(delta, 1.0, 0.0), torch.tensor([2.0, 0.0, 0.0, -1.0]))
    soft = torch.tensor([2.0, 0.0, 0.0, -1.0])
    torch.testing.assert_close(shrink(delta, 1.0, 1.0), soft * (1 - 1 / soft.norm()))
    assert torch.equal(shrink(delta, 1.0, 10.0), torch.zeros(4))


def test_save_load_and_registry(tiny_lm, modules, tmp_path):
    method = train(tiny_lm, modules, steps=3)
    loaded = SteeringMethod.load(method.save(tmp_path / "lineas.pt"), tiny_lm)
    assert type(loaded) is get_method("LinEAS") and loaded.options == method.options
    h = torch.randn(3, tiny_lm.hidden_size)
    for name, steering_map in method.maps().items():
        assert torch.equal(steering_map(h), loaded.maps()[name](h))


def test_stop_after_ends_the_pass_after_the_last_module(tiny_lm, modules):
    manager = HookManager(tiny_lm.model)
    capture = manager.capture(modules)
    manager.stop_after(modules[:1])
    with manager, pytest.raises(StopForward), torch.no_grad():
        tiny_lm.model(**tiny_lm.tokenizer(TOXIC, return_tensors="pt", padding=True))
    assert list(capture.batches) == modules[:1]


def test_unknown_optimizer_or_schedule_is_an_error():
    with pytest.raises(UsageError, match="sgd or adam"):
        get_method("lineas")(optimizer="lbfgs")
    with pytest.raises(UsageError, match="cosine or constant"):
        get_method("lineas")(schedule="linear")
