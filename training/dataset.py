"""Photos decoded and resized once into an in-memory uint8 tensor, and augmentation on those tensors.

Decoding a JPEG costs more than a training step of EfficientNet-Lite0 on a GPU, and on 2 CPU cores
it would eat a fifth of every epoch; so every photo is decoded and resized exactly once, kept as
``uint8 (N, 3, H, W)`` (about 200 kB a photo at 258 px) and saved under ``build/cache`` keyed by the
files' checksums and the size, so the next run loads it in a second.

Evaluation images are cached at the model's input size through ``model.preprocess`` — the same
pixels the serving handlers feed the network. Training images are cached a little larger
(``TRAIN_CACHE_SCALE``) so random crops stay sharp, and augmented either on the device, batched
(:class:`BinAugment`: one ``affine_grid``/``grid_sample`` per batch does crop, flip and rotation
for every photo with its own parameters), or per photo in DataLoader workers with
``torchvision.transforms.v2`` (:func:`worker_transform`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset, Sampler

from common.files import replacing
from model.config import ModelConfig
from training.data import MANIFEST, Manifest
from training.losses import class_weights
from training.progress import progress

CACHE_VERSION = 2  # 2: resized by Pillow (model/preprocess.py)
#: Training photos are cached at this multiple of the input size, then randomly cropped down to it.
TRAIN_CACHE_SCALE = 1.15


@dataclass(frozen=True)
class Entry:
    """One photo of a split: where it is, its true count and a fingerprint for the cache key."""

    id: str
    count: int
    path: Path
    fingerprint: str


@dataclass
class ImageSet:
    """A split in memory: ``images`` uint8 ``(N, 3, H, W)``, ``counts`` the true counts (int64)."""

    images: torch.Tensor
    counts: torch.Tensor
    ids: list[str]

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, indices: Sequence[int]) -> ImageSet:
        index = torch.as_tensor(list(indices), dtype=torch.long)
        return ImageSet(self.images[index], self.counts[index], [self.ids[i] for i in index.tolist()])


def list_split(root: Path, split: str | None) -> list[Entry]:
    """The photos of ``split`` in a prepared folder (manifest) or a bare channel (``<count>/*.jpg``)."""
    manifest_path = root / MANIFEST
    if split is not None and manifest_path.is_file():
        manifest = Manifest.load(manifest_path)
        return [
            Entry(s["id"], int(s["count"]), root / s["path"], s["sha256"])
            for s in manifest.samples
            if s["split"] == split
        ]
    base = root / split if split is not None and (root / split).is_dir() else root
    entries: list[Entry] = []
    for folder in sorted(p for p in base.iterdir() if p.is_dir() and p.name.isdigit()):
        for path in sorted(folder.glob("*.jp*g")):
            stat = path.stat()
            entries.append(Entry(path.stem, int(folder.name), path, f"{stat.st_size}:{stat.st_mtime_ns}"))
    return entries


class EpochSampler(Sampler[int]):
    """Indices for one epoch: a permutation, or draws weighted by class (oversampling rare counts).

    ``photo_weights`` multiplies each photo's chance (``--data A,B --data-weights 1,3``: a photo
    of B is drawn three times as often as one of A); any non-uniform weight makes the epoch draws
    with replacement. Seeded by (seed, epoch), so a resumed run sees the same order as an
    uninterrupted one.
    """

    def __init__(
        self,
        labels: torch.Tensor,
        num_classes: int,
        mode: str,
        seed: int,
        photo_weights: torch.Tensor | None = None,
    ) -> None:
        self.n = int(labels.shape[0])
        self.seed = seed
        self.epoch = 0
        weights = None if mode == "shuffle" else class_weights(labels, num_classes, mode)[labels]
        if photo_weights is not None and not bool((photo_weights == photo_weights[0]).all()):
            weights = photo_weights.double() * (1.0 if weights is None else weights.double())
        self.weights = weights

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        if self.weights is None:
            return iter(torch.randperm(self.n, generator=generator).tolist())
        return iter(torch.multinomial(self.weights, self.n, replacement=True, generator=generator).tolist())


def cache_key(entries: Sequence[Entry], size: tuple[int, int], resize: str) -> str:
    payload = json.dumps(
        [CACHE_VERSION, list(size), resize, [(e.id, e.count, e.fingerprint) for e in entries]]
    ).encode()
    return hashlib.sha256(payload).hexdigest()[:20]


def decode_resized(path: Path, config: ModelConfig) -> torch.Tensor:
    """uint8 ``(3, H, W)`` at ``config.image_size``, decoded and resized as serving does."""
    from model.preprocess import decode_image, resize_for_model

    return torch.from_numpy(resize_for_model(decode_image(path.read_bytes()), config)).permute(2, 0, 1)


def normalise(batch: torch.Tensor, config: ModelConfig) -> torch.Tensor:
    """``uint8`` ``(N, 3, H, W)`` -> the network's float input, on the batch's own device, with the
    constants serving normalises with (:func:`model.preprocess.normalisation`)."""
    from model.preprocess import normalisation

    if batch.dtype != torch.uint8:
        raise TypeError(f"normalise expects uint8 pixels, got {batch.dtype}")
    offset, scale = normalisation(config)
    shape = (1, 3, 1, 1)
    return (
        batch.float()
        .sub_(torch.tensor(offset, device=batch.device).view(shape))
        .mul_(torch.tensor(scale, device=batch.device).view(shape))
    )


def load_images(
    entries: Sequence[Entry],
    config: ModelConfig,
    size: tuple[int, int] | None = None,
    cache_dir: Path | None = None,
    name: str = "images",
    workers: int | None = None,
) -> ImageSet:
    """Decode + resize every photo once (threads), or load the same set from the cache file."""
    size = size or config.image_size
    sized = dataclasses.replace(config, image_size=size)
    cache_file = None
    if cache_dir is not None:
        cache_file = cache_dir / f"{name}-{size[0]}x{size[1]}-{cache_key(entries, size, config.resize)}.pt"
        if cache_file.is_file():
            data = torch.load(cache_file, weights_only=True)
            return ImageSet(data["images"], data["counts"], list(data["ids"]))
    images = torch.empty((len(entries), 3, size[0], size[1]), dtype=torch.uint8)
    workers = workers or min(8, os.cpu_count() or 1)

    def decode(index: int) -> int:
        images[index] = decode_resized(entries[index].path, sized)
        return index

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for _ in progress(
            pool.map(decode, range(len(entries))), total=len(entries), desc=f"decode {name}", unit="img"
        ):
            pass
    result = ImageSet(
        images, torch.tensor([e.count for e in entries], dtype=torch.long), [e.id for e in entries]
    )
    if cache_file is not None:
        with replacing(cache_file) as partial:
            torch.save({"images": result.images, "counts": result.counts, "ids": result.ids}, partial)
    return result


def train_cache_size(image_size: tuple[int, int]) -> tuple[int, int]:
    return (round(image_size[0] * TRAIN_CACHE_SCALE), round(image_size[1] * TRAIN_CACHE_SCALE))


class CachedDataset(Dataset[tuple[torch.Tensor, int]]):
    """(uint8 image, class index) pairs from an :class:`ImageSet`, optionally transformed per photo."""

    def __init__(
        self, images: torch.Tensor, labels: torch.Tensor, transform: nn.Module | None = None
    ) -> None:
        self.images = images
        self.labels = labels
        self.transform = transform

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self.images[index]
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.labels[index])


@dataclass(frozen=True)
class AugmentSettings:
    """Augmentation for bin photos: crops keep most of the bin; tape bands are in every photo anyway."""

    scale: tuple[float, float] = (0.7, 1.0)  # area of the photo a crop keeps
    ratio: tuple[float, float] = (0.85, 1.18)  # mild change of aspect
    rotate_degrees: float = 5.0
    flip: bool = True
    brightness: float = 0.25
    contrast: float = 0.25
    saturation: float = 0.25
    blur_probability: float = 0.2
    blur_sigma: tuple[float, float] = (0.3, 1.2)


#: ``--augment-preset``: "strong" widens crops, rotation and colour for runs long enough to use it.
AUGMENT_PRESETS: dict[str, AugmentSettings] = {
    "default": AugmentSettings(),
    "strong": AugmentSettings(
        scale=(0.55, 1.0),
        ratio=(0.75, 1.33),
        rotate_degrees=10.0,
        brightness=0.4,
        contrast=0.4,
        saturation=0.4,
        blur_probability=0.3,
        blur_sigma=(0.3, 1.6),
    ),
}


def worker_transform(size: tuple[int, int], settings: AugmentSettings = AugmentSettings()) -> nn.Module:
    """The per-photo ``torchvision.transforms.v2`` pipeline, for augmentation in DataLoader workers."""
    from torchvision.transforms import v2

    return v2.Compose(
        [
            v2.RandomResizedCrop(size, scale=settings.scale, ratio=settings.ratio, antialias=True),
            v2.RandomHorizontalFlip() if settings.flip else v2.Identity(),
            v2.RandomRotation(settings.rotate_degrees),
            v2.ColorJitter(settings.brightness, settings.contrast, settings.saturation),
            v2.RandomApply([v2.GaussianBlur(5, settings.blur_sigma)], p=settings.blur_probability),
        ]
    )


class BinAugment(nn.Module):
    """The same augmentation as :func:`worker_transform`, batched on the device.

    Crop, flip and rotation are one affine map per photo (``affine_grid`` + ``grid_sample``);
    colour jitter and blur are per-photo factors broadcast over the batch. Input and output are
    uint8, so the result goes through the serving ``normalise`` exactly like an evaluation batch.
    """

    def __init__(self, size: tuple[int, int], settings: AugmentSettings = AugmentSettings()) -> None:
        super().__init__()
        self.size = size
        self.settings = settings

    def _uniform(self, n: int, low: float, high: float, device: torch.device) -> torch.Tensor:
        return torch.empty(n, device=device).uniform_(low, high)

    @torch.no_grad()
    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        s = self.settings
        n, device = batch.shape[0], batch.device
        x = batch.float() / 255.0
        area = self._uniform(n, *s.scale, device)
        log_ratio = self._uniform(n, math.log(s.ratio[0]), math.log(s.ratio[1]), device)
        ratio = torch.exp(log_ratio)
        width = torch.sqrt(area * ratio).clamp(max=1.0)  # fractions of the photo's width / height
        height = torch.sqrt(area / ratio).clamp(max=1.0)
        centre_x = (torch.rand(n, device=device) * 2 - 1) * (1 - width)
        centre_y = (torch.rand(n, device=device) * 2 - 1) * (1 - height)
        angle = self._uniform(n, -s.rotate_degrees, s.rotate_degrees, device) * (math.pi / 180)
        flip = (
            torch.where(torch.rand(n, device=device) < 0.5, -1.0, 1.0)
            if s.flip
            else torch.ones(n, device=device)
        )
        cos, sin = torch.cos(angle), torch.sin(angle)
        theta = torch.stack(
            [
                torch.stack([cos * width * flip, -sin * height, centre_x], dim=1),
                torch.stack([sin * width * flip, cos * height, centre_y], dim=1),
            ],
            dim=1,
        )
        grid = F.affine_grid(theta, [n, 3, self.size[0], self.size[1]], align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)

        def factor(strength: float) -> torch.Tensor:
            return self._uniform(n, max(0.0, 1 - strength), 1 + strength, device).view(n, 1, 1, 1)

        x = x * factor(s.brightness)
        grey = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]).clamp(0, 1)
        x = (x - grey.mean(dim=(2, 3), keepdim=True)) * factor(s.contrast) + grey.mean(
            dim=(2, 3), keepdim=True
        )
        grey = 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]
        x = (x - grey) * factor(s.saturation) + grey
        if s.blur_probability > 0:
            x = self._blur(x, torch.rand(n, device=device) < s.blur_probability)
        return (x.clamp(0, 1) * 255.0).round().to(torch.uint8)

    def _blur(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if not bool(mask.any()):
            return x
        sigma = sum(self.settings.blur_sigma) / 2
        offsets = torch.arange(5, device=x.device, dtype=x.dtype) - 2
        kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
        kernel = kernel / kernel.sum()
        c = x.shape[1]
        blurred = F.conv2d(
            F.pad(x, (2, 2, 0, 0), mode="reflect"), kernel.view(1, 1, 1, 5).repeat(c, 1, 1, 1), groups=c
        )
        blurred = F.conv2d(
            F.pad(blurred, (0, 0, 2, 2), mode="reflect"), kernel.view(1, 1, 5, 1).repeat(c, 1, 1, 1), groups=c
        )
        return torch.where(mask.view(-1, 1, 1, 1), blurred, x)
