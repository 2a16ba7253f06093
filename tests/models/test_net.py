import torch

from models.net import CropNet, NetConfig


def test_forward_shapes_and_loss():
    m = CropNet(NetConfig())
    x = torch.randn(5, 3, 32, 32)
    logits, loss = m(x)
    assert logits.shape == (5, 8) and loss is None
    logits, loss = m(x, torch.tensor([0, 1, 2, 3, 4]))
    assert loss is not None and loss.ndim == 0 and loss.item() > 0


def test_groupnorm_not_batchnorm():
    m = CropNet(NetConfig())
    kinds = {type(mod).__name__ for mod in m.modules()}
    assert "GroupNorm" in kinds
    assert not any("BatchNorm" in k for k in kinds)


def test_per_sample_output_is_independent_of_the_batch():
    """GroupNorm: a crop's logits do not depend on what else is in the batch."""
    m = CropNet(NetConfig()).eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        alone = m(x[:1])[0]
        batch = m(x)[0][:1]
    assert torch.allclose(alone, batch, atol=1e-5)


def test_size_stays_compact():
    assert CropNet(NetConfig()).num_parameters() < 250_000
