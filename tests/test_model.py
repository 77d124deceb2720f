"""The modules' shapes and the loading of VGG-Face / torchvision VGG-16 weights."""

import pickle

import pytest
import torch

from expmap.model import EFE, EMR, EPMG, STACK, WeightsError, build_stack
from expmap.model.vggface import VGG_FACE_CONV_NAMES, VGG_FACE_MEAN, conv_layers

VGG16_CHANNELS = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256),
                  (256, 512), (512, 512), (512, 512), (512, 512), (512, 512), (512, 512)]


@pytest.mark.parametrize("classes", [6, 7])
@pytest.mark.parametrize("width", [1 / 32, 1 / 8])
def test_shapes(classes, width):
    efe = EFE(classes, width)
    out = efe(torch.rand(2, 3, 224, 224) * 255)
    channels = round(512 * width)
    assert out.mask.shape == (2, 1, 7, 7) and out.features.shape == (2, channels, 7, 7)
    assert out.logits.shape == (2, classes)
    assert ((out.mask >= 0) & (out.mask <= 1)).all()
    emr = EMR()(out.mask)
    assert emr.h.shape == (2, 16) and emr.refined.shape == (2, 1, 7, 7)
    generated = EPMG(classes, channels)(out.features)
    assert generated.embedding.shape == (2, 128) and generated.logits.shape == (2, classes)
    assert generated.pattern.shape == (2, 1, 224, 224)
    assert generated.pattern.min() >= 0 and generated.pattern.max() <= 1


def test_width_scales_every_conv_and_fc():
    narrow = EFE(7, 1 / 16)
    assert [c.out_channels for c in conv_layers(narrow.features)] == [
        round(out / 16) for _, out in VGG16_CHANNELS]
    assert narrow.classifier[0].out_features == 256 and narrow.classifier[3].out_features == 256


@pytest.mark.parametrize("batch_norm", [False, True])
def test_the_efe_continues_from_the_activations_of_its_first_convs(batch_norm):
    efe = EFE(num_classes=3, width=1 / 16, batch_norm=batch_norm).eval()
    images = torch.rand(2, 3, 224, 224) * 255
    whole = efe(images)
    for convs in (0, 1, 2, 5, 12, 13):
        part = efe.forward_from(efe.prefix(images, convs), convs)
        assert torch.allclose(part.logits, whole.logits, atol=1e-5), convs
        assert torch.allclose(efe.masked_from(efe.prefix(images, convs), convs)[1],
                              whole.features, atol=1e-5), convs
    assert efe.prefix(images, 13).shape == (2, 32, 7, 7)  # after the last max-pool
    assert efe.prefix(images, 2).shape == (2, 4, 112, 112)  # a max-pool follows conv 2


def test_emr_reads_mask_row_major():
    emr = EMR()
    mask = torch.rand(1, 1, 7, 7)
    h = emr(mask).h
    # the last hidden state changes when the last cell (row 7, column 7) changes
    changed = mask.clone()
    changed[0, 0, 6, 6] += 0.5
    assert not torch.allclose(emr(changed).h, h)


def test_orthogonal_emr_remembers_the_first_cell():
    """The reason for emr_init: orthogonal: a change of the first of 49 cells still moves h
    at the end, where PyTorch's default init has forgotten it."""
    torch.manual_seed(0)
    mask = 0.5 + 0.05 * torch.randn(64, 1, 7, 7)
    changed = mask.clone()
    changed[:, 0, 0, 0] += 0.1
    effect = {}
    for init in ("uniform", "orthogonal"):
        emr = EMR(init=init)
        w = emr.rnn.weight_hh_l0.detach()
        if init == "orthogonal":
            torch.testing.assert_close(w @ w.T, torch.eye(16), atol=1e-5, rtol=0)
        with torch.no_grad():
            effect[init] = (emr(changed).h - emr(mask).h).norm(dim=1).mean().item()
    assert effect["orthogonal"] > 10 * effect["uniform"]


def test_mean_grey_decoder_starts_at_the_mean_grey_with_live_channels():
    torch.manual_seed(0)
    epmg = EPMG(7, 16)
    epmg.init_decoder("mean_grey", 0.3)
    features = torch.rand(4, 16, 7, 7)
    pattern = epmg(features).pattern
    assert pattern.mean().item() == pytest.approx(0.3, abs=0.02)
    h = epmg.encoder(features)
    for layer in list(epmg.decoder)[:-2]:  # every hidden ReLU layer has live units
        h = layer(h)
        if isinstance(layer, torch.nn.ReLU):
            assert (h > 0).float().mean() > 0.2
    with pytest.raises(ValueError, match="decoder init"):
        epmg.init_decoder("zeros", 0.3)


def vgg_face_dag_state(drop=None, reshape=None):
    """A state dict with vgg_face_dag.pth's key names and shapes (fc8: 2622 identities)."""
    state = {}
    for name, (cin, cout) in zip(VGG_FACE_CONV_NAMES, VGG16_CHANNELS):
        state[f"{name}.weight"] = torch.full((cout, cin, 3, 3), 0.5)
        state[f"{name}.bias"] = torch.full((cout,), 0.25)
    for name, (fin, fout) in {"fc6": (25088, 4096), "fc7": (4096, 4096),
                              "fc8": (4096, 2622)}.items():
        state[f"{name}.weight"] = torch.full((fout, fin), 0.125)
        state[f"{name}.bias"] = torch.full((fout,), 0.0625)
    if drop:
        del state[drop]
    if reshape:
        state[reshape] = state[reshape][:-1]
    return state


@pytest.fixture(scope="module")
def full_efe():
    return EFE(7, 1.0)


def test_vgg_face_dag_loads_and_brings_its_normalisation(tmp_path, full_efe):
    path = tmp_path / "vgg_face_dag.pth"
    torch.save(vgg_face_dag_state(), path)
    assert full_efe.load_backbone(str(path)) == "vgg_face_dag"
    assert torch.equal(full_efe.features[0].weight, torch.full((64, 3, 3, 3), 0.5))
    assert torch.equal(full_efe.features[28].bias, torch.full((512,), 0.25))
    assert torch.equal(full_efe.classifier[3].weight, torch.full((4096, 4096), 0.125))
    assert full_efe.classifier[6].weight.shape == (7, 4096)  # fc8 (identities) dropped
    assert torch.allclose(full_efe.input_mean.flatten(), torch.tensor(VGG_FACE_MEAN))
    assert torch.equal(full_efe.input_std.flatten(), torch.ones(3))


def test_torchvision_vgg16_state_dict_loads(tmp_path):
    import torchvision

    narrow = torchvision.models.vgg16()
    path = tmp_path / "vgg16.pth"
    torch.save(narrow.state_dict(), path)
    efe = EFE(6, 1.0)
    assert efe.load_backbone(str(path)) == "torchvision"
    assert torch.equal(efe.features[26].weight, narrow.features[26].weight)
    assert torch.equal(efe.classifier[0].weight, narrow.classifier[0].weight)
    assert efe.input_std.flatten()[0] == pytest.approx(255 * 0.229)


@pytest.mark.parametrize("drop,reshape,message", [
    ("conv3_2.weight", None, "missing conv3_2.weight"),
    (None, "fc6.weight", "fc6.weight has shape (4095, 25088)"),
])
def test_wrong_weights_refused_naming_first_mismatch(tmp_path, full_efe, drop, reshape, message):
    path = tmp_path / "bad.pth"
    torch.save(vgg_face_dag_state(drop, reshape), path)
    with pytest.raises(WeightsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        full_efe.load_backbone(str(path))


def test_unknown_layout_and_narrow_model_refused(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"layer1.weight": torch.zeros(2)}, path)
    with pytest.raises(WeightsError, match="expected the keys of vgg_face_dag.pth"):
        EFE(7, 1 / 16).load_backbone(str(path))
    torch.save(vgg_face_dag_state(), path)
    with pytest.raises(WeightsError, match="conv1_1.weight has shape"):
        EFE(7, 1 / 16).load_backbone(str(path))
    with pytest.raises(WeightsError, match="no batch norm; set model.batch_norm: false"):
        EFE(7, 1 / 16, batch_norm=True).load_backbone(str(path))


class Exploit:
    def __reduce__(self):
        return (open, ("/tmp/expmap-pwned", "w"))


def test_pickle_that_runs_code_is_refused_unexecuted(tmp_path):
    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps({"conv1_1.weight": Exploit()}))
    with pytest.raises(WeightsError, match="weights_only=True"):
        EFE(7, 1 / 16).load_backbone(str(path))
    import os
    assert not os.path.exists("/tmp/expmap-pwned")


def test_missing_weights_file():
    with pytest.raises(WeightsError, match="does not exist"):
        EFE(7, 1 / 16).load_backbone("/nonexistent/vgg_face_dag.pth")


def test_the_stack_is_built_in_one_order_whatever_is_asked():
    """Stage 2 builds (efe, emr) and loads efe from stage 1: its new EMR must start from the
    same weights as an EMR built beside a fresh EFE with the same seed."""
    torch.manual_seed(5)
    whole = build_stack(["epmg", "emr", "efe"], 7, 1 / 16)
    torch.manual_seed(5)
    two = build_stack(["efe", "emr"], 7, 1 / 16)
    assert list(whole) == list(STACK)
    assert all(torch.equal(a, b) for a, b in zip(whole["emr"].state_dict().values(),
                                                  two["emr"].state_dict().values()))
    assert whole["epmg"].encoder[0].in_channels == whole["efe"].channels
    with pytest.raises(ValueError, match="starts with efe"):
        build_stack(["emr"], 7, 1 / 16)
