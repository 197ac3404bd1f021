"""Data: CIFAR archives (download, md5, conversion), the on-device augmentation, the ImageNet loaders."""
import hashlib
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from PIL import Image

from reproduce.data import augment, cifar, imagenet
from reproduce.data.order import Order
from reproduce.errors import UserError
from conftest import N_TEST, N_TRAIN, SIZES, closed_port_url, committed_params_dict, make_archive, make_imagenet

@pytest.fixture(scope="session", params=["cifar10", "cifar100"])
def archive(request, tmp_path_factory):
    name = request.param
    path, md5, members = make_archive(name, tmp_path_factory.mktemp(name))
    return name, path, md5, members


def test_prepare_round_trips_pixels_labels_and_classes(archive, tmp_path):
    name, path, md5, members = archive
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / path.name).write_bytes(path.read_bytes())
    out = cifar.prepare(name, raw, tmp_path / f"{name}.pt", md5, url=closed_port_url())  # no download needed
    data = cifar.load(out)
    n_train = N_TRAIN * len(cifar.source(name).train_list)
    assert data["train_x"].shape == (n_train, 3, 32, 32) and data["train_x"].dtype == torch.uint8
    assert data["test_x"].shape == (N_TEST, 3, 32, 32) and data["test_y"].dtype == torch.int64
    assert data["train_x"][0, :, 1, 2].tolist() == [200, 20, 30]  # channel order RGB, row-major pixels
    assert data["train_x"][0, :, 5, 7].tolist() == [10, 20, 30]
    src = cifar.source(name)
    label_key = b"labels" if name == "cifar10" else b"fine_labels"
    train = [members[f] for f, _ in src.train_list]
    assert data["train_y"].tolist() == sum((b[label_key] for b in train), [])
    assert data["test_y"].tolist() == members[src.test_list[0][0]][label_key]
    last = members[src.test_list[0][0]][b"data"][-1]
    assert data["test_x"][-1].flatten().tolist() == last.tolist()
    assert data["classes"][:2] == ["class0", "class1"]
    assert len(data["classes"]) == (10 if name == "cifar10" else 100)
    assert data["name"] == name and data["source_md5"] == md5

    before = out.stat().st_mtime_ns
    cifar.prepare(name, raw, out, md5, url=closed_port_url())
    assert out.stat().st_mtime_ns == before  # converted already: not written again


def test_load_of_a_missing_file_says_to_download(tmp_path):
    with pytest.raises(UserError, match="python -m reproduce download --dataset cifar100"):
        cifar.load(tmp_path / "cifar100.pt")


@pytest.mark.parametrize("url", [closed_port_url, lambda: "file:///nonexistent/cifar-10-python.tar.gz"])
def test_failed_download_names_the_place_and_md5_and_leaves_nothing(tmp_path, url):
    md5 = cifar.source("cifar10").tgz_md5
    with pytest.raises(UserError) as error:
        cifar.fetch_archive("cifar10", tmp_path, md5, url=url())
    message = str(error.value)
    assert str(tmp_path.resolve() / "cifar-10-python.tar.gz") in message and md5 in message
    assert "\n" not in message and list(tmp_path.iterdir()) == []


def test_download_from_file_url_leaves_exactly_the_archive(archive, tmp_path):
    name, path, md5, _ = archive
    got = cifar.fetch_archive(name, tmp_path, md5, url=path.as_uri())
    assert list(tmp_path.iterdir()) == [got] and cifar.md5sum(got) == md5


def test_download_with_wrong_md5_keeps_nothing(archive, tmp_path):
    name, path, md5, _ = archive
    with pytest.raises(UserError, match=f"md5 {md5}, expected {'0' * 32}"):
        cifar.fetch_archive(name, tmp_path, "0" * 32, url=path.as_uri())
    assert list(tmp_path.iterdir()) == []


def test_corrupt_archive_in_place_is_refused_and_kept(tmp_path):
    bad = tmp_path / "cifar-10-python.tar.gz"
    bad.write_bytes(b"not an archive")
    found = hashlib.md5(b"not an archive").hexdigest()
    with pytest.raises(UserError, match=f"has md5 {found}, expected {cifar.source('cifar10').tgz_md5}"):
        cifar.prepare("cifar10", tmp_path, tmp_path / "cifar10.pt")
    assert bad.read_bytes() == b"not an archive" and not (tmp_path / "cifar10.pt").exists()


def test_truncated_archive_is_a_user_error_and_writes_nothing(archive, tmp_path):
    name, path, _, _ = archive
    raw, out = tmp_path / "raw", tmp_path / "out"
    raw.mkdir()
    truncated = raw / path.name
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(UserError, match=str(truncated)):
        cifar.prepare(name, raw, out / f"{name}.pt", cifar.md5sum(truncated))
    assert not out.exists() or list(out.iterdir()) == []


def test_download_stage_command_line(archive, tmp_path):
    name, path, md5, _ = archive
    params = committed_params_dict()
    params["data"].update({"raw": str(tmp_path / "raw"), name: {"md5": md5}})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    cmd = [sys.executable, "-m", "reproduce", "download", "--dataset", name, "--params", str(tmp_path / "params.yaml")]
    ok = subprocess.run(cmd + ["--out", str(tmp_path / "data.pt"), "--url", path.as_uri()], capture_output=True, text=True)
    assert ok.returncode == 0 and f"{N_TEST} test images" in ok.stdout and (tmp_path / "data.pt").exists()
    (tmp_path / "raw" / path.name).unlink()
    bad = subprocess.run(cmd + ["--out", str(tmp_path / "other.pt"), "--url", closed_port_url()], capture_output=True, text=True)
    assert bad.returncode == 2 and "could not download" in bad.stderr and md5 in bad.stderr and "data.raw" in bad.stderr
    assert "Traceback" not in bad.stderr and not (tmp_path / "other.pt").exists()


# ---- on-device augmentation ----

N, B = 100, 32  # B does not divide N: batches straddle epochs


@pytest.fixture(scope="module")
def images():
    return torch.randint(0, 256, (N, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def stream(images, **kw):
    return augment.CifarStream(images, torch.arange(N), "cifar10", B, seed=7, **kw)  # label = sample index


def test_normalize_uses_the_authors_constants(images):
    mean, std = cifar.MEAN_STD["cifar10"]
    expected = (images.double() - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    torch.testing.assert_close(augment.normalize(images, "cifar10").double(), expected)


def test_batch_depends_only_on_seed_and_iteration(images):
    fresh, used = stream(images), stream(images)
    for it in range(7):
        used.batch(it)
    x, y = fresh.batch(7)
    x2, y2 = used.batch(7)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert x.shape == (B, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    other = augment.CifarStream(images, torch.arange(N), "cifar10", B, seed=8)
    assert not torch.equal(other.batch(7)[0], x)


def test_the_processes_shares_of_a_batch_are_its_consecutive_slices(images):
    whole = stream(images).batch(5)
    parts = [stream(images).batch(5, rank, 4) for rank in range(4)]
    assert all(torch.equal(w, torch.cat([p[i] for p in parts])) for i, w in enumerate(whole))


def test_per_epoch_batches_end_each_epoch_with_a_smaller_one(images):
    """fb.resnet.torch dataloader.lua: ceil(N/B) batches of one permutation, the last holding the rest."""
    s = stream(images, batches="per_epoch")
    sizes = [len(s.batch(it)[1]) for it in range(8)]
    assert sizes == [32, 32, 32, 4] * 2 and [s.size(it) for it in range(8)] == sizes
    epochs = [torch.cat([s.batch(it)[1] for it in range(e * 4, e * 4 + 4)]) for e in (0, 1)]
    assert all(torch.equal(e.sort().values, torch.arange(N)) for e in epochs) and not torch.equal(*epochs)
    halves = [s.batch(3, rank, 2)[1] for rank in (0, 1)]  # the short batch, shared by two processes
    assert [len(h) for h in halves] == [2, 2] and torch.equal(torch.cat(halves), s.batch(3)[1])


def test_bfloat16_channels_last(images):
    x, _ = stream(images, dtype=torch.bfloat16, memory_format=torch.channels_last).batch(0)
    assert x.dtype == torch.bfloat16 and x.is_contiguous(memory_format=torch.channels_last)


def test_every_sample_once_per_epoch(images):
    s = stream(images)
    order = torch.cat([s.batch(it)[1] for it in range(10)])  # 320 positions: 3 whole epochs and a bit
    epochs = order[: 3 * N].view(3, N)
    for epoch in epochs:
        assert torch.equal(epoch.sort().values, torch.arange(N))
    assert not torch.equal(epochs[0], epochs[1])


def test_each_image_is_a_possibly_flipped_window_of_the_padded_image(images):
    s, reference = stream(images), augment.normalize(images, "cifar10")
    flips, offsets = set(), set()
    for it in range(30):
        x, y = s.batch(it)
        windows = F.pad(reference[y], (4, 4, 4, 4)).unfold(2, 32, 1).unfold(3, 32, 1)  # [B, 3, 9, 9, 32, 32]
        matches = torch.stack([(windows == view[:, :, None, None]).all(dim=5).all(dim=4).all(dim=1)
                               for view in (x, x.flip(-1))], dim=1)  # [B, flipped?, dy, dx]
        assert matches.flatten(1).sum(dim=1).eq(1).all()  # each image is exactly one window
        for _, flip, dy, dx in matches.nonzero().tolist():
            flips.add(flip)
            offsets.add((dy, dx))
    assert flips == {0, 1} and offsets == {(dy, dx) for dy in range(9) for dx in range(9)}


@pytest.mark.gpu
def test_a_batch_on_the_gpu_never_waits_for_it(images):
    # The hot loop must not synchronise the host with the GPU: the CPU queues the next steps while the
    # GPU runs this one. The sync debug mode raises on any synchronising call.
    s, expected = stream(images, device="cuda"), stream(images).batch(3)
    torch.cuda.set_sync_debug_mode("error")
    try:
        got = s.batch(3)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.testing.assert_close(got[0].cpu(), expected[0])  # the same crops as on the CPU
    assert torch.equal(got[1].cpu(), expected[1])


def test_eval_batches_are_in_order_and_unaugmented(images):
    batches = list(augment.eval_batches(images, torch.arange(N), "cifar10", batch_size=40))
    assert [len(y) for _, y in batches] == [40, 40, 20]
    assert torch.equal(torch.cat([x for x, _ in batches]), augment.normalize(images, "cifar10"))


# ---- ImageNet ----

@pytest.fixture(scope="module")
def imagenet_root(tmp_path_factory):
    return make_imagenet(tmp_path_factory.mktemp("imagenet"))


@pytest.mark.parametrize("augmentation", ["scale", "scale_aspect"])
def test_imagenet_loaders_shapes(imagenet_root, augmentation):
    data = imagenet.ImageNet(imagenet_root, augmentation)
    x, y = next(iter(data.train_loader(Order(len(data.train), 3, 0))))
    assert x.shape == (3, 3, 224, 224) and x.dtype == torch.float32 and set(y.tolist()) <= {0, 1}
    assert sorted(data.val) == ["center224", "center320"]
    for crop, size in (("center224", 224), ("center320", 320)):
        batches = list(data.eval_loader(crop, batch_size=3))
        assert batches[0][0].shape == (3, 3, size, size) and sum(len(y) for _, y in batches) == 2 * len(SIZES)


def test_imagenet_batches_follow_the_order_from_any_iteration(imagenet_root):
    """Batch `it` is the same images, cropped and coloured the same, read from the start or from `it`
    (a resumed run decodes nothing it trained on), with or without workers."""
    data = imagenet.ImageNet(imagenet_root, "scale_aspect", seed=3, size=64, limit=(5, 3))
    order = Order(len(data.train), 2, seed=3)  # across epoch ends: 2.5 batches an epoch
    from_start = [x for _, (x, _) in zip(range(6), data.train_loader(order))]
    resumed = [x for _, (x, _) in zip(range(2), data.train_loader(order, start=4, workers=1))]
    assert x_equal(from_start[4:], resumed) and from_start[0].shape == (2, 3, 64, 64)
    assert not torch.equal(from_start[0], from_start[1])
    shares = [next(iter(data.train_loader(order, start=4, rank=r, world=2)))[0] for r in (0, 1)]
    assert x_equal([torch.cat(shares)], from_start[4:5])  # each its half
    assert next(iter(data.eval_loader("center320", batch_size=3)))[0].shape == (3, 3, 91, 91)


def x_equal(a, b):
    return len(a) == len(b) and all(torch.equal(u, v) for u, v in zip(a, b))


def test_imagenet_evaluation_shards_cover_the_val_set_once(imagenet_root):
    data = imagenet.ImageNet(imagenet_root, "scale")
    shares = [[y for _, y in data.eval_loader("center224", rank, 3, batch_size=2)] for rank in range(3)]
    assert sum(len(y) for share in shares for y in share) == 2 * len(SIZES)
    whole = torch.cat([y for _, y in data.eval_loader("center224", batch_size=8)])
    assert torch.equal(torch.cat([torch.cat(s) for s in shares]).sort().values, whole.sort().values)


def test_scale_is_1s_augmentation_and_only_scale_aspect_jitters_colours():
    """[1]: shorter side in [256, 480], a 224 crop, flip and AlexNet's PCA colour noise; the † row's
    fb.resnet.torch imagenet.lua: RandomSizedCrop + ColorJitter 0.4 + Lighting 0.1."""
    kinds = {aug: [type(t).__name__ for t in imagenet.train_transform(aug).transforms] for aug in imagenet.AUGMENTATIONS}
    assert kinds["scale"][:3] == ["RandomResize", "RandomCrop", "RandomHorizontalFlip"]
    assert "Lighting" in kinds["scale"] and "FbColorJitter" not in kinds["scale"]
    resize = imagenet.train_transform("scale").transforms[0]
    assert (resize.min_size, resize.max_size) == (256, 481)  # shorter side uniform in [256, 480]
    assert kinds["scale_aspect"][0] == "FbSizedCrop" and {"FbColorJitter", "Lighting"} <= set(kinds["scale_aspect"])


def test_fb_sized_crop_draws_its_aspect_ratio_as_fb_does():
    """transforms.lua: r uniform in [3/4, 4/3], w = sqrt(area) r, h = sqrt(area) / r, swapped half the time:
    sqrt(w/h) is r or 1/r with equal odds (a Kolmogorov-Smirnov test on 4,000 draws), not torchvision's
    log-uniform ratio in [3/4, 4/3]."""
    from scipy import stats

    torch.manual_seed(0)
    draws = [imagenet.FbSizedCrop.draw(4000, 4000) for _ in range(4000)]
    t = [(w / h) ** 0.5 for w, h in draws]
    uniform = stats.uniform(3 / 4, 4 / 3 - 3 / 4)

    def cdf(x):
        x = np.asarray(x)
        return 0.5 * uniform.cdf(x) + 0.5 * uniform.sf(1 / x)

    assert stats.kstest(t, cdf).pvalue > 0.01
    ratios = [w / h for w, h in draws]  # fb's w/h spans [9/16, 16/9]; torchvision's is log-uniform in [3/4, 4/3]
    assert max(ratios) > 1.7 and stats.kstest(ratios, stats.loguniform(3 / 4, 4 / 3).cdf).pvalue < 1e-6
    areas = [w * h / 4000**2 for w, h in draws]
    assert stats.kstest(areas, stats.uniform(0.08, 0.92).cdf).pvalue > 0.01


def test_fb_sized_crop_falls_back_to_scale_and_centre_crop():
    torch.manual_seed(0)
    thin = Image.new("RGB", (1000, 12))  # no attempt fits: 10 tries, then Scale(224) + CenterCrop(224)
    assert imagenet.FbSizedCrop(224)(thin).size == (224, 224)


def test_fb_colour_jitter_blends_without_clamping():
    torch.manual_seed(1)
    img = torch.full((3, 4, 4), 0.95)
    outs = torch.stack([imagenet.FbColorJitter(0.4, 0.4, 0.4)(img) for _ in range(50)])
    assert outs.max() > 1.0  # brightness above 1 is kept, as fb's blend does
    grey = torch.rand(3, 5, 5)
    grey[:] = grey[0]  # a grey image: saturation changes nothing, contrast and brightness scale about fixed points
    out = imagenet.FbColorJitter(0, 0, 0.4)(grey)
    torch.testing.assert_close(out, grey)


def test_lighting_shifts_each_channel_by_a_constant():
    torch.manual_seed(0)
    img = torch.rand(3, 8, 8)
    shift = imagenet.Lighting(0.1)(img) - img
    assert torch.allclose(shift, shift[:, :1, :1].expand_as(shift), atol=1e-6) and shift.abs().max() > 0


def test_top_k_errors():
    logits = torch.tensor([[0.0, 1.0, 2.0], [2.0, 1.0, 0.0], [1.0, 2.0, 0.0]])
    assert imagenet.top_k_errors(logits, torch.tensor([2, 1, 2]), ks=(1, 2)).tolist() == [2, 1]


@pytest.mark.parametrize("layout", ["missing", "no_val", "no_images", "other_classes"])
def test_bad_imagenet_roots(tmp_path, layout):
    root = tmp_path / "imagenet"
    if layout != "missing":
        (root / "train" / "n01").mkdir(parents=True)
    if layout in ("no_images", "other_classes"):
        (root / "val" / ("n02" if layout == "other_classes" else "n01")).mkdir(parents=True)
    if layout == "other_classes":
        for split, wnid in (("train", "n01"), ("val", "n02")):
            Image.new("RGB", (40, 30)).save(root / split / wnid / "a.JPEG")
    with pytest.raises(UserError, match="cannot be downloaded automatically") as error:
        imagenet.ImageNet(root, "scale")
    assert str(root) in str(error.value) and "<root>/train/<wnid>/*.JPEG" in str(error.value)


def test_unknown_augmentation(imagenet_root):
    with pytest.raises(UserError, match="did you mean 'scale_aspect'"):
        imagenet.ImageNet(imagenet_root, "scale_aspet")
